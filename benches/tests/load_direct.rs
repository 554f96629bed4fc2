//! The load generator end to end against an in-process SFU through its HTTP
//! control API (`--direct`): 1 room x 1 publisher x 2 subscribers for ~3 s.
//! No timing assertions: this checks that media flows to both subscribers,
//! that loss is accounted, and that the JSON report has its fields.

use std::time::Duration;

use convene_benches::LoadArgs;
use convene_sfu::config::Secret;
use convene_sfu::SfuConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_mode_one_publisher_two_subscribers() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "convene_benches=info,convene_sfu=warn".into()),
        )
        .with_test_writer()
        .try_init();
    let mut config = SfuConfig::for_tests();
    config.http_addr = Some("127.0.0.1:0".parse().unwrap());
    config.http_secret = Some(Secret("load-test-secret".into()));
    let (sfu, _handle) = convene_sfu::start(config).await.expect("SFU starts");
    let url = format!("http://{}", sfu.http_addr().expect("HTTP API bound"));

    let mut args = LoadArgs::direct(url, "load-test-secret");
    args.duration = Duration::from_secs(3);
    args.video_kbps = 600;
    let report = tokio::time::timeout(Duration::from_secs(90), convene_benches::run(args))
        .await
        .expect("the run ends by itself")
        .expect("the run succeeds");
    println!("{}\n{}", report.table(), report.json());

    assert_eq!(report.peers_failed, 0, "{report:?}");
    assert_eq!(report.peers_joined, 3);
    assert_eq!(
        report.m.receivers_with_media, 2,
        "both subscribers got media: {report:?}"
    );
    // Each subscriber receives the publisher's audio and video.
    assert_eq!(report.m.subscriber_streams, 4, "{report:?}");
    assert!(report.m.packets_received > 100, "{report:?}");
    assert!(report.m.loss < 0.2, "loss {} in {report:?}", report.m.loss);
    assert_eq!(report.join_ms.count, 2);

    // The last line of `--json` output parses and has the documented fields.
    let v: serde_json::Value = serde_json::from_str(&report.json()).expect("JSON report");
    for key in [
        "loss",
        "forwarded_pps",
        "sfu_cpu_cores",
        "subscriber_streams_per_core",
        "rss_mb",
        "loadgen_cpu_cores",
        "loadgen_cpu_limit_cores",
        "loadgen_limited",
    ] {
        assert!(v.get(key).is_some(), "{key} missing in {v}");
    }
    for q in ["p50", "p95", "p99"] {
        assert!(v["latency_ms"][q].is_number(), "latency_ms.{q} in {v}");
    }
    assert!(v["join_ms"]["p50"].is_number() && v["join_ms"]["p99"].is_number());
    sfu.shutdown().await;
}
