// An ntex-amqp server that accepts every transfer on link "bench" (one worker thread).
use ntex::SharedCfg;
use ntex::service::{boxed, boxed::BoxService, fn_service};
use ntex_amqp::{error::LinkError, server, types};

async fn accept_all(
    _link: &types::Link<()>,
) -> Result<BoxService<types::Link<()>, types::Transfer, types::Outcome, LinkError>, LinkError> {
    Ok(boxed::service(fn_service(async |_req| Ok(types::Outcome::Accept))))
}

#[ntex::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:5673".into());
    ntex::server::Server::builder()
        .bind("amqp", addr, SharedCfg::new("SRV"), async |_| {
            server::Server::builder(async move |con: server::Handshake| match con {
                server::Handshake::Amqp(con) => {
                    let con = con.open().await.unwrap();
                    Ok(con.ack(()))
                }
                server::Handshake::Sasl(_) => Err(()),
            })
            .build(server::Router::<()>::builder().service("bench", accept_all).build())
        })?
        .workers(1)
        .run()
        .await
}
