// Sends COUNT unsettled messages (one data section of SIZE bytes) to link "bench" with up
// to WINDOW in flight, waits for every outcome, and prints the rate.
use std::collections::VecDeque;
use std::time::Instant;

use ntex::service::Pipeline;
use ntex::util::Bytes;
use ntex::SharedCfg;
use ntex_amqp::client;
use urly::Url;

#[ntex::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:5673".into());
    let count: usize = args.next().map_or(200_000, |s| s.parse().unwrap());
    let size: usize = args.next().map_or(100, |s| s.parse().unwrap());
    let window: usize = args.next().map_or(1000, |s| s.parse().unwrap());
    let mut msg = vec![0x00, 0x53, 0x75];
    if size < 256 {
        msg.extend_from_slice(&[0xa0, size as u8]);
    } else {
        msg.push(0xb0);
        msg.extend_from_slice(&(size as u32).to_be_bytes());
    }
    msg.extend(std::iter::repeat_n(b'x', size));
    let msg = Bytes::from(msg);

    let uri = Url::try_from(format!("amqp://{addr}")).unwrap();
    let driver = Pipeline::new(SharedCfg::default(), client::Connector::new())
        .call(client::Connect::new(uri))
        .await
        .unwrap();
    let sink = driver.sink();
    ntex::rt::spawn(async move {
        let _ = driver.start_default().await;
    });
    let session = sink.open_session().await.unwrap();
    let link = session.build_sender_link("bench", "bench").attach().await.unwrap();

    let start = Instant::now();
    let mut in_flight = VecDeque::with_capacity(window);
    let mut accepted = 0usize;
    for _ in 0..count {
        if in_flight.len() >= window.max(1) {
            let d: ntex_amqp::Delivery = in_flight.pop_front().unwrap();
            if d.wait().await.unwrap().is_some() {
                accepted += 1;
            }
        }
        in_flight.push_back(link.transfer(msg.clone()).send().await.unwrap());
    }
    while let Some(d) = in_flight.pop_front() {
        if d.wait().await.unwrap().is_some() {
            accepted += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "ntex-amqp: {accepted} accepted of {count} in {secs:.3} s: {:.0} msg/s",
        count as f64 / secs
    );
    assert_eq!(accepted, count);
}
