//! The ceiling for the read benchmark: a bare axum handler answering every GET with the same
//! bytes. `cargo run --release --example ceiling -- ADDR FILE`.

use axum::http::header;
use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18199".into());
    let file = args.next().expect("usage: ceiling ADDR FILE");
    let bytes: &'static [u8] = Box::leak(std::fs::read(file)?.into_boxed_slice());
    let app = Router::new().fallback(get(move || async move {
        (
            [(header::CONTENT_TYPE, "application/fhir+json; charset=utf-8")],
            bytes,
        )
    }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
