//! `GET /board` rendered by a real browser: a host on the bank example
//! serves the board, headless Chromium (Debian's `chromium`) loads it, and
//! the test checks what it shows: the DOM Chromium built holds every
//! command, event, aggregate, policy and read model of the model the host
//! serves (`GET /model`), each once and with its class, and its screenshot
//! paints each of the five sticky colours over at least a sticky's area.
//!
//! Chromium is `$AETHER_CHROMIUM`, else `chromium` on `PATH`; without it
//! the test fails, saying how to install it (`cargo xtask install-chromium`).
//! With `AETHER_BOARD_SCREENSHOT=<file>` (relative to the workspace root)
//! the screenshot is also copied there: that is how `docs/board.png` is made.

use super::support::{Host, aether_host, bank};
use aether_host::board::Kind;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a Chromium run may take (a cold start on a busy machine
/// takes seconds, not minutes).
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn the_board_renders_in_chromium_with_every_element_and_colour() {
    let chromium = chromium();
    let data = tempfile::tempdir().unwrap();
    let host = Host::start(&data.path().join("events"), &[]);
    let url = format!("{}/board", host.url);

    let (page, model) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let response = reqwest::get(&url).await.expect("the host answers");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/html; charset=utf-8");
        assert!(response.headers().contains_key("content-security-policy"));
        let page = response.text().await.unwrap();
        let model: Value = reqwest::get(format!("{}/model", host.url)).await.unwrap().json().await.unwrap();
        (page, model)
    });
    assert!(page.contains("<title>bank — EventStorming board</title>"), "{page}");

    // The CLI draws the same page from the model it fetches.
    let out = aether_host().args(["model", "--format", "html", "--url", &host.url]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), page);
    let out = aether_host().arg("check").arg(bank()).args(["--format", "svg"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let svg = String::from_utf8(out.stdout).unwrap();
    assert!(svg.starts_with("<svg ") && page.contains(&svg), "{svg}");

    let profile = tempfile::tempdir().unwrap();
    let dom = run_chromium(&chromium, profile.path(), &["--dump-dom", &url]);
    let dom = String::from_utf8(dom).expect("the DOM is UTF-8");
    assert_eq!(drawn(&dom), expected(&model), "the rendered DOM:\n{dom}");
    assert!(dom.contains("<svg"), "{dom}");

    // Big enough for the whole board: the SVG says its size.
    let (width, height) = svg_size(&page);
    let shot = profile.path().join("board.png");
    let window = format!("--window-size={},{}", width as u32 + 80, height as u32 + 160);
    run_chromium(
        &chromium,
        profile.path(),
        &[&format!("--screenshot={}", shot.display()), &window, "--force-device-scale-factor=1", &url],
    );
    if let Some(copy) = std::env::var_os("AETHER_BOARD_SCREENSHOT") {
        // A relative path is taken from the workspace's root, not `host/`.
        let copy = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(copy);
        std::fs::copy(&shot, &copy).unwrap_or_else(|e| panic!("copying the screenshot to {}: {e}", copy.display()));
    }
    let painted = colours(&std::fs::read(&shot).unwrap());
    // At least most of one sticky (160 x 60) of each colour; the legend's
    // swatches (14 x 14) alone are far fewer.
    let sticky = 160 * 60 * 3 / 4;
    for kind in Kind::ALL {
        let count = painted[&kind.class()];
        assert!(count >= sticky, "{} ({}) painted on {count} pixels only: {painted:?}", kind.class(), kind.fill());
    }
}

/// `(class, data-name)` of every sticky the model should put on the board,
/// from the model the host serves.
fn expected(model: &Value) -> BTreeMap<(String, String), usize> {
    let names = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_owned()).collect()
    };
    let mut expected = BTreeMap::new();
    let mut add = |class: &str, name: String| *expected.entry((class.to_owned(), name)).or_default() += 1;
    for aggregate in model["aggregates"].as_array().unwrap() {
        let name = aggregate["name"].as_str().unwrap();
        add("aggregate", name.to_owned());
        for command in names(&aggregate["commands"]) {
            add("command", format!("{name}.{command}"));
        }
        for event in names(&aggregate["events"]) {
            add("event", format!("{name}.{event}"));
        }
    }
    for policy in names(&model["policies"]) {
        add("policy", policy);
    }
    for read_model in names(&model["read_models"]) {
        add("read-model", read_model);
    }
    // The bank has all five kinds: the test would prove little otherwise.
    for class in ["command", "event", "aggregate", "policy", "read-model"] {
        assert!(expected.keys().any(|(c, _)| c == class), "the bank's model has no {class}");
    }
    expected
}

/// `(class, data-name)` of every `<g>` in the DOM with both, and how often.
fn drawn(dom: &str) -> BTreeMap<(String, String), usize> {
    let mut drawn = BTreeMap::new();
    for (at, _) in dom.match_indices("<g ") {
        let tag = &dom[at..at + dom[at..].find('>').expect("a closed tag")];
        if let (Some(class), Some(name)) = (attribute(tag, "class"), attribute(tag, "data-name")) {
            *drawn.entry((class.to_owned(), name.to_owned())).or_default() += 1;
        }
    }
    drawn
}

fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[start..start + tag[start..].find('"')?])
}

/// The `width` and `height` of the page's `<svg>`.
fn svg_size(page: &str) -> (f64, f64) {
    let at = page.find("<svg ").expect("the page holds an SVG");
    let tag = &page[at..at + page[at..].find('>').unwrap()];
    let number = |name| attribute(tag, name).and_then(|v| v.parse().ok()).expect("a numeric size");
    (number("width"), number("height"))
}

/// How many pixels of the PNG have each kind's colour (within a few levels:
/// no colour management is promised).
fn colours(png_bytes: &[u8]) -> BTreeMap<&'static str, usize> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("chromium wrote a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).expect("the PNG decodes");
    let channels = match frame.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("a screenshot in {other:?}"),
    };
    let wanted: Vec<(&str, [u8; 3])> = Kind::ALL.iter().map(|k| (k.class(), rgb(k.fill()))).collect();
    let mut counts: BTreeMap<&str, usize> = wanted.iter().map(|(class, _)| (*class, 0)).collect();
    for pixel in pixels[..frame.buffer_size()].chunks_exact(channels) {
        for (class, colour) in &wanted {
            if pixel.iter().zip(colour).all(|(a, b)| a.abs_diff(*b) <= 4) {
                *counts.get_mut(class).unwrap() += 1;
            }
        }
    }
    counts
}

fn rgb(hex: &str) -> [u8; 3] {
    let byte = |i: usize| u8::from_str_radix(&hex[1 + 2 * i..3 + 2 * i], 16).expect("#rrggbb");
    [byte(0), byte(1), byte(2)]
}

/// `$AETHER_CHROMIUM`, else `chromium` on `PATH`; a failure saying how to
/// install it otherwise.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("AETHER_CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "AETHER_CHROMIUM={} is not a file", path.display());
        return path;
    }
    aether_devtools::chromium().unwrap_or_else(|| {
        panic!(
            "chromium is not on PATH, and the board test needs it: run `cargo xtask install-chromium` \
             (Debian's package: `apt-get install chromium`) or set AETHER_CHROMIUM to its path"
        )
    })
}

/// Runs headless Chromium with `args`, killed after [`CHROMIUM_TIMEOUT`];
/// its stdout.
fn run_chromium(chromium: &Path, profile: &Path, args: &[&str]) -> Vec<u8> {
    let mut child = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        .args(["--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars", "--disable-extensions"])
        .arg(format!("--user-data-dir={}", profile.join("profile").display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromium.display()));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("chromium is waitable") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish in {CHROMIUM_TIMEOUT:?}:\n{}", err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = err.join().unwrap();
    assert!(status.success(), "chromium {args:?} failed with {status}:\n{stderr}");
    out.join().unwrap()
}
