//! Plays a [`Player`] over a transport: the async driver of
//! the sans-IO scripted peer.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::transport::Transport;
use crate::script::player::{Action, Player};

/// Runs `player` over `io` until it has a verdict ([`Player::verdict`]): writes what it
/// sends, feeds it what the peer sends, closes or half-closes when it says so, and wakes it
/// at its deadlines.
pub async fn play(player: &mut Player, io: Transport) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let now = || tokio::time::Instant::now().into_std();
    player.start(now());
    let mut buf = vec![0u8; 64 * 1024];
    let mut reading = true;
    loop {
        let mut out = Vec::new();
        player.poll_transmit(&mut out);
        if !out.is_empty() && (wr.write_all(&out).await.is_err() || wr.flush().await.is_err()) {
            // The peer is gone: what it sent so far is all there is.
            if reading {
                reading = false;
                player.handle_eof(now());
            }
        }
        while let Some(a) = player.poll_action() {
            let _ = wr.shutdown().await;
            if a == Action::Close && reading {
                // Closed by us: nothing more will be read.
                reading = false;
                player.handle_eof(now());
            }
        }
        if player.verdict().is_some() {
            return;
        }
        let deadline = player.poll_timeout().map(tokio::time::Instant::from_std);
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = rd.read(&mut buf), if reading => match r {
                Ok(0) | Err(_) => {
                    reading = false;
                    player.handle_eof(now());
                }
                Ok(n) => player.handle_input(buf.get(..n).unwrap_or_default(), now()),
            },
            () = sleep => player.handle_timeout(now()),
        }
    }
}
