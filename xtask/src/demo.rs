//! `cargo xtask demo`: the bank example on `aether-host load`, a round trip
//! over HTTP, then the host keeps serving until Ctrl-C.

use aether_host::api::client::CommandIds;
use aether_host::api::{ClientError, HttpClient};
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

    let client = HttpClient::new(&url)?;
    println!("\nAccount/demo over HTTP:");
    // Fixed keys: a second run answers them as duplicates and appends nothing.
    send(&client, "Open", json!({ "owner": "ada" }), "demo-open").await?;
    send(&client, "Deposit", json!({ "amount": 100 }), "demo-deposit").await?;
    send(&client, "Withdraw", json!({ "amount": 30 }), "demo-withdraw").await?;
    send(&client, "Withdraw", json!({ "amount": 1_000 }), "demo-overdraw").await?;
    let state = client.state("Account", "demo", None).await?;
    println!("  state: version {}, {}", state["version"], state["state"]);
    let before = client.state("Account", "demo", Some(2)).await?;
    println!("  state at version 2 (time travel): {}", before["state"]);
    println!(
        "\nThe host keeps serving at {url}; try, in another terminal:\n  \
         curl -X POST {url}/actors/Account/alice/commands/Open -d '{{\"owner\": \"Alice\"}}'\n  \
         cargo run -q -p aether-host -- send Account alice Deposit '{{\"amount\": 25}}' --url {url}\n  \
         cargo run -q -p aether-host -- events Account alice --url {url}\n  \
         curl {url}/metrics\n\
         Ctrl-C stops it; run `cargo xtask demo` again and the history carries on."
    );
    let status = host.wait().await?;
    if !status.success() {
        bail!("aether-host exited with {status}");
    }
    Ok(())
}

async fn send(client: &HttpClient, command: &str, payload: Value, key: &str) -> anyhow::Result<()> {
    let ids = CommandIds { idempotency_key: Some(key), ..CommandIds::default() };
    match client.send("Account", "demo", command, Some(&payload), ids).await {
        Ok(answer) => {
            let names: Vec<&str> =
                answer["events"].as_array().into_iter().flatten().filter_map(|e| e["name"].as_str()).collect();
            let repeat = if answer["duplicate"] == true { " (a repeat: nothing appended)" } else { "" };
            println!("  {command} {payload} -> 200, version {}: {names:?}{repeat}", answer["version"]);
        }
        Err(ClientError::Api { status, kind, message, .. }) => {
            println!("  {command} {payload} -> {status} {kind}: {message}")
        }
        Err(err) => return Err(err.into()),
    }
    Ok(())
}
