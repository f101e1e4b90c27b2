//! `cargo xtask demo`: the bank example on `aether-host load`, a round trip
//! over HTTP with the host's own client subcommands (`send`, `state`), two
//! transfers run by the bank's saga and the owners read model (`query`),
//! then the host keeps serving until Ctrl-C.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

pub async fn run(load: std::process::Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {load:?}");
    let mut host = tokio::process::Command::from(load)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start aether-host")?;
    // Ctrl-C reaches the host too (same process group); the demo waits for
    // it to shut down cleanly rather than dying first.
    tokio::spawn(async { while tokio::signal::ctrl_c().await.is_ok() {} });
    let mut lines = BufReader::new(host.stdout.take().expect("piped")).lines();
    let url = loop {
        let Some(line) = lines.next_line().await? else {
            let status = host.wait().await?;
            bail!("aether-host stopped before listening ({status})");
        };
        println!("{line}");
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.to_owned();
        }
    };
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            println!("{line}");
        }
    });

    println!("\nAn account over HTTP, with the host's client subcommands:");
    // Fixed keys: a second run answers them as duplicates and appends nothing.
    let account = ["Account", "demo"];
    send(&url, account, "Open", json!({ "owner": "ada" }), "demo-open").await?;
    send(&url, account, "Deposit", json!({ "amount": 100 }), "demo-deposit").await?;
    send(&url, account, "Withdraw", json!({ "amount": 30 }), "demo-withdraw").await?;
    send(&url, account, "Withdraw", json!({ "amount": 1_000 }), "demo-overdraw").await?;
    let state = client(&url, &["state", "Account", "demo"]).await?.map_err(anyhow::Error::msg)?;
    println!("  state: version {}, {}", state["version"], state["state"]);
    let before = client(&url, &["state", "Account", "demo", "--at-version", "2"]).await?.map_err(anyhow::Error::msg)?;
    println!("  state at version 2 (time travel): {}", before["state"]);

    println!("\nTransfers, run by the TransferSaga policy, seen by the AccountsByOwner read model:");
    send(&url, ["Account", "demo-savings"], "Open", json!({ "owner": "ada" }), "demo-open-savings").await?;
    let moves = [("demo-t1", 20, "demo-transfer-1"), ("demo-t2", 5_000, "demo-transfer-2")];
    for (id, amount, key) in moves {
        let start = json!({ "from": "demo", "to": "demo-savings", "amount": amount });
        send(&url, ["Transfer", id], "Start", start, key).await?;
    }
    for (id, ..) in moves {
        let ended = ended(&url, id).await?;
        println!("  Transfer/{id}: {ended}");
    }
    let rows =
        client(&url, &["query", "AccountsByOwner", "--where", "owner=ada"]).await?.map_err(anyhow::Error::msg)?;
    for row in rows["rows"].as_array().into_iter().flatten() {
        println!("  AccountsByOwner/{}: {}", row["key"].as_str().unwrap_or_default(), row["row"]);
    }
    println!(
        "\nThe host keeps serving at {url}; try, in another terminal:\n  \
         curl -X POST {url}/actors/Account/alice/commands/Open -d '{{\"owner\": \"Alice\"}}'\n  \
         cargo run -q -p aether-host -- send Account alice Deposit '{{\"amount\": 25}}' --url {url}\n  \
         cargo run -q -p aether-host -- events Account alice --url {url}\n  \
         cargo run -q -p aether-host -- query AccountsByOwner --where owner=Alice --url {url}\n  \
         open {url}/board\n  \
         curl {url}/metrics\n\
         Ctrl-C stops it; run `cargo xtask demo` again and the history carries on."
    );
    let status = host.wait().await?;
    if !status.success() {
        bail!("aether-host exited with {status}");
    }
    Ok(())
}

/// The transfer's status once the saga has ended it (it runs beside the
/// commands, from the store's log).
async fn ended(url: &str, transfer: &str) -> anyhow::Result<Value> {
    for _ in 0..100 {
        let state = client(url, &["state", "Transfer", transfer]).await?.map_err(anyhow::Error::msg)?;
        if state["state"]["status"] != "Pending" {
            return Ok(state["state"]["status"].clone());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    bail!("Transfer/{transfer} did not end within 5 s")
}

async fn send(url: &str, [aggregate, id]: [&str; 2], command: &str, payload: Value, key: &str) -> anyhow::Result<()> {
    let args = ["send", aggregate, id, command, &payload.to_string(), "--key", key];
    match client(url, &args).await? {
        Ok(answer) => {
            let names: Vec<&str> =
                answer["events"].as_array().into_iter().flatten().filter_map(|e| e["name"].as_str()).collect();
            let repeat = if answer["duplicate"] == true { " (a repeat: nothing appended)" } else { "" };
            println!("  {aggregate}/{id} {command} {payload} -> version {}: {names:?}{repeat}", answer["version"]);
        }
        Err(refused) => println!("  {aggregate}/{id} {command} {payload} -> {refused}"),
    }
    Ok(())
}

/// `aether-host <args> --url <url>`, as a user would run it: its JSON
/// answer, or the reason it printed when it exited with an error.
async fn client(url: &str, args: &[&str]) -> anyhow::Result<Result<Value, String>> {
    let output = tokio::process::Command::from(crate::cargo())
        .current_dir(crate::root())
        .args(["run", "--quiet", "--package", "aether-host", "--bin", "aether-host", "--"])
        .args(args)
        .args(["--url", url])
        .output()
        .await
        .context("cannot run aether-host")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Ok(Err(stderr.trim().trim_start_matches("aether-host: ").to_owned()));
    }
    let answer = serde_json::from_slice(&output.stdout).with_context(|| {
        format!("aether-host {args:?} printed no JSON: {}", String::from_utf8_lossy(&output.stdout))
    })?;
    Ok(Ok(answer))
}
