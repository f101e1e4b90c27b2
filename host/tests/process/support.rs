//! Starting `aether-host load` on the bank example and talking to it.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn component(crate_dir: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    aether_testkit::build_component(root.join(crate_dir)).unwrap_or_else(|e| panic!("{e}"))
}

pub fn bank() -> PathBuf {
    component("examples/bank")
}

pub fn aether_host() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aether-host"))
}

/// A running `aether-host load`, killed on drop.
pub struct Host {
    child: Child,
    pub url: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Host {
    /// `aether-host load <bank.wasm> --data <data> --listen 127.0.0.1:0 <extra>`.
    pub fn start(data: &Path, extra: &[&str]) -> Host {
        let mut args = vec!["--data", data.to_str().expect("a UTF-8 temp path")];
        args.extend_from_slice(extra);
        Self::load(&args)
    }

    /// `aether-host load <bank.wasm> --listen 127.0.0.1:0 <args>`.
    pub fn load(args: &[&str]) -> Host {
        Self::load_with_env(args, &[])
    }

    /// As [`Host::load`], with these environment variables set too.
    pub fn load_with_env(args: &[&str], env: &[(&str, &str)]) -> Host {
        Self::spawn(aether_host(), "127.0.0.1", args, env)
    }

    /// As [`Host::load`], run inside the network namespace `netns`, its
    /// HTTP door on `door` (an address of the namespace's).
    pub fn load_in(netns: &str, door: std::net::IpAddr, args: &[&str]) -> Host {
        let mut ip = Command::new("ip");
        ip.args(["netns", "exec", netns, env!("CARGO_BIN_EXE_aether-host")]);
        Self::spawn(ip, &door.to_string(), args, &[])
    }

    /// `<command> load <bank.wasm> --listen <ip>:0 <args>`.
    fn spawn(mut command: Command, ip: &str, args: &[&str], env: &[(&str, &str)]) -> Host {
        let mut child = command
            .arg("load")
            .arg(bank())
            .args(["--listen", &format!("{ip}:0")])
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("aether-host starts");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = collect(child.stderr.take().unwrap());
        let (ready, listening) = std::sync::mpsc::channel();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = stdout.clone();
        std::thread::spawn(move || {
            while let Some(Ok(line)) = lines.next() {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = ready.send(url.to_owned());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let url = listening.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the host did not start listening:\n{}", stderr.lock().unwrap())
        });
        Host { child, url, stdout, stderr }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush or finish anything.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// Ctrl-C, then waits for the exit.
    pub fn interrupt(&mut self) -> ExitStatus {
        self.signal("-INT")
    }

    /// SIGTERM (what a process supervisor sends), then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM")
    }

    fn signal(&mut self, signal: &str) -> ExitStatus {
        let status = Command::new("kill").args([signal, &self.pid().to_string()]).status().expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("waitable") {
                return status;
            }
            assert!(Instant::now() < deadline, "the host did not stop after {signal}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// A raw HTTP answer: status and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// Plain HTTP, so the tests see exactly what a client sees.
pub struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    pub fn new(host: &Host) -> Self {
        Self { base: host.url.clone(), client: reqwest::Client::new() }
    }

    pub async fn post(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.client.post(format!("{}{path}", self.base)).body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        answer(request).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        answer(self.client.get(format!("{}{path}", self.base))).await
    }

    pub async fn text(&self, path: &str) -> String {
        self.client.get(format!("{}{path}", self.base)).send().await.unwrap().text().await.unwrap()
    }
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the host answers");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    Answer { status, body }
}

impl Http {
    /// POSTs with an idempotency key; `Err` once the host is gone.
    pub async fn try_post(&self, path: &str, body: &str, key: &str) -> Result<u16, reqwest::Error> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Idempotency-Key", key)
            .body(body.to_owned())
            .send()
            .await?;
        let status = response.status().as_u16();
        // The answer counts only once its body has arrived whole.
        response.bytes().await?;
        Ok(status)
    }
}
