//! Starting services: `convene up` (everything, one process) and the
//! single-service commands.

use std::sync::Arc;

use anyhow::Context as _;
use axum::routing::get;
use convene::inprocess::{InProcessControl, InProcessSfu, InProcessUsers};
use convene_control::{Control, ControlConfig};
use convene_httpd::{ConnLimits, ConnMetrics};
use convene_signaling::{NodeOptions, Signaling};
use prometheus::Encoder as _;
use tokio::net::TcpListener;

use crate::cli::{ControlArgs, HttpArgs, UpArgs};

/// Fills in the embedded defaults: without DATABASE_URL the control plane uses
/// a SQLite file and a persisted JWT secret in the data directory, and the
/// public URL follows the listener.
fn embedded_defaults(http: &HttpArgs, mut control: ControlConfig) -> anyhow::Result<ControlConfig> {
    convene_control::datadir::apply_embedded(&mut control, &http.data_dir)
        .with_context(|| format!("preparing data directory {}", http.data_dir.display()))?;
    if control.public_url == ControlConfig::default().public_url {
        control.public_url = public_url_for(http.http_addr);
        tracing::info!(
            public_url = %control.public_url,
            "public URL follows --http-addr; set --public-url for clients on other hosts"
        );
    }
    Ok(control)
}

/// The public URL when none is given: the listener's own address, with
/// `localhost` for a wildcard bind (a browser cannot be sent to `0.0.0.0`,
/// and the one client a wildcard bind is sure to serve without a configured
/// URL is on this host).
fn public_url_for(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// Serves `app` with `limits` until Ctrl-C/SIGTERM, exporting the connection
/// metrics through `registry` (the one this listener's `/metrics` renders).
/// Every convene listener goes through here.
pub(crate) async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    limits: &ConnLimits,
    registry: &prometheus::Registry,
) -> anyhow::Result<()> {
    let metrics = ConnMetrics::register(registry).context("registering connection metrics")?;
    convene_httpd::serve(listener, app, limits, &metrics, crate::shutdown::signal())
        .await
        .context("HTTP server")
}

/// Renders the SFU's and signaling's registries; the control plane serves its
/// own at `/metrics`, so these go to `/metrics/media`.
fn media_metrics(registries: &[prometheus::Registry]) -> String {
    let mut families = Vec::new();
    for r in registries {
        families.extend(r.gather());
    }
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&families, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

pub async fn run_all(args: UpArgs) -> anyhow::Result<()> {
    let control_config = embedded_defaults(&args.http, args.control)?;
    let ice = control_config.ice.clone();
    let control = Control::start(control_config)
        .await
        .context("starting control plane")?;
    let (sfu, sfu_handle) = convene_sfu::start(args.sfu.clone())
        .await
        .context("starting SFU")?;
    // One process, one SFU: rooms and presence stay in this process.
    let options = NodeOptions {
        users: Some(Arc::new(InProcessUsers(control.clone()))),
        redis: None,
    };
    let signaling = Signaling::with_options(
        args.signaling,
        Arc::new(InProcessControl(control.clone())),
        Arc::new(InProcessSfu(sfu_handle)),
        ice,
        options,
    )
    .await
    .context("starting signaling")?;

    let registries = vec![sfu.registry().clone(), signaling.registry().clone()];
    let app = control
        .router()
        .merge(signaling.router())
        .route(
            "/metrics/media",
            get(move || {
                let registries = registries.clone();
                async move { media_metrics(&registries) }
            }),
        )
        .merge(convene::web::router());

    let listener = TcpListener::bind(args.http.http_addr)
        .await
        .with_context(|| format!("binding {}", args.http.http_addr))?;
    let addr = listener.local_addr()?;
    println!("convene is up");
    println!("  web client  http://{addr}/");
    println!("  REST API    http://{addr}/v1   (OpenAPI: http://{addr}/openapi.json)");
    println!("  signaling   ws://{addr}/v1/ws");
    println!("  media       udp {}", sfu.local_addr());
    println!("  metrics     http://{addr}/metrics  http://{addr}/metrics/media");
    let served = serve_http(
        listener,
        app,
        &args.http.limits,
        control.metrics().registry(),
    )
    .await;
    sfu.shutdown().await;
    control.close().await;
    served?;
    tracing::info!("shut down cleanly");
    Ok(())
}

pub async fn run_control(args: ControlArgs) -> anyhow::Result<()> {
    let control = embedded_defaults(&args.http, args.control)?;
    let control = Control::start(control)
        .await
        .context("starting control plane")?;
    let listener = TcpListener::bind(args.http.http_addr)
        .await
        .with_context(|| format!("binding {}", args.http.http_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "control plane listening");
    let served = serve_http(
        listener,
        control.router(),
        &args.http.limits,
        control.metrics().registry(),
    )
    .await;
    control.close().await;
    served
}

#[cfg(test)]
mod tests {
    use super::public_url_for;

    #[test]
    fn public_url_follows_the_listener() {
        let url = |a: &str| public_url_for(a.parse().unwrap());
        assert_eq!(url("127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(url("127.0.0.2:9000"), "http://127.0.0.2:9000");
        assert_eq!(url("0.0.0.0:8080"), "http://localhost:8080");
        assert_eq!(url("[::]:8443"), "http://localhost:8443");
        assert_eq!(url("192.0.2.7:8080"), "http://192.0.2.7:8080");
        assert_eq!(url("[2001:db8::1]:8080"), "http://[2001:db8::1]:8080");
    }
}
