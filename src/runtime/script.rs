//! Plays a [`Player`] over a transport: the async driver of
//! the sans-IO scripted peer.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::transport::Transport;
use crate::script::player::{Action, Player};

/// Runs `player` over `io` until it has a verdict ([`Player::verdict`]): writes what it
/// sends, feeds it what the peer sends, closes or half-closes when it says so, and wakes it
/// at its deadlines.
pub async fn play(player: &mut Player, io: Transport) {
    play_watched(player, io, &mut |_, _| {}).await;
}

/// [`play`], showing `watch` every byte as it passes: `watch(true, bytes)` for what the
/// player sends (each write, right before it is made: a `write` step's pieces one by one,
/// at their own times), `watch(false, bytes)` for what the peer sent.
pub async fn play_watched(
    player: &mut Player,
    io: Transport,
    watch: &mut (dyn FnMut(bool, &[u8]) + Send),
) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let now = || tokio::time::Instant::now().into_std();
    player.start(now());
    let mut buf = vec![0u8; 64 * 1024];
    let mut reading = true;
    loop {
        let mut out = Vec::new();
        player.poll_transmit(&mut out);
        if !out.is_empty() && write_paced(&mut wr, &out, player.pacing(), watch).await.is_err() {
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
                Ok(n) => {
                    let got = buf.get(..n).unwrap_or_default();
                    watch(false, got);
                    player.handle_input(got, now());
                }
            },
            () = sleep => player.handle_timeout(now()),
        }
    }
}

/// Writes `data`, split into writes of `chunk` bytes with `delay` between them when a
/// pacing is given, each flushed and shown to `watch` right before it is made.
async fn write_paced<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    data: &[u8],
    pacing: Option<(usize, std::time::Duration)>,
    watch: &mut (dyn FnMut(bool, &[u8]) + Send),
) -> std::io::Result<()> {
    let Some((chunk, delay)) = pacing else {
        watch(true, data);
        wr.write_all(data).await?;
        return wr.flush().await;
    };
    for (i, piece) in data.chunks(chunk.max(1)).enumerate() {
        if i > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        watch(true, piece);
        wr.write_all(piece).await?;
        wr.flush().await?;
    }
    Ok(())
}
