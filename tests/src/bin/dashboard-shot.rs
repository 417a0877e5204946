//! Screenshots of the dashboard, from `delestage demo`, for docs/dashboard.md; and
//! what the page costs in headless Chromium: bytes over the wire and the
//! time to first paint.
//!
//! ```text
//! cargo build --bins && cargo run -p delestage-tests --bin dashboard-shot -- [DIR] [--loads N]
//! ```
//!
//! Writes `DIR/dashboard.png` (1280 px wide) and `DIR/dashboard-phone.png`
//! (375 px), default `docs/`; then loads the page N times (default 10),
//! each in a fresh browser profile (nothing cached), and prints one line:
//! `dashboard page_bytes=.. api_bytes=.. first_paint_ms_median=.. first_contentful_paint_ms_median=.. ..`.

use std::path::PathBuf;

use delestage_tests::{Browser, start_demo};
use serde_json::Value;

#[tokio::main]
async fn main() {
    let mut dir = PathBuf::from("docs");
    let mut loads = 10usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--loads" => {
                loads = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--loads N: a number")
            }
            "-h" | "--help" => {
                println!(
                    "usage: dashboard-shot [DIR] [--loads N]\n\
                     Screenshots of `delestage demo`'s dashboard into DIR (default docs/), then page weight and first paint over N fresh loads (default 10)."
                );
                return;
            }
            other => dir = PathBuf::from(other),
        }
    }
    std::fs::create_dir_all(&dir).expect("create the output directory");

    let demo = start_demo().await;
    let url = format!("http://{}/", demo.addr_of("serving the dashboard").await);
    eprintln!("demo dashboard at {url}");

    for (name, width, height) in [
        ("dashboard.png", 1280, 1200),
        ("dashboard-phone.png", 375, 1400),
    ] {
        let browser = Browser::start(width, height).await;
        ready(&browser, &url).await;
        let png = browser.client.screenshot().await.expect("a screenshot");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("write the screenshot");
        eprintln!("wrote {}", path.display());
        browser.close().await;
    }

    let mut first_paint = Vec::new();
    let mut contentful = Vec::new();
    let mut page_bytes = 0;
    let mut api_bytes = 0;
    for _ in 0..loads {
        let browser = Browser::start(1280, 900).await;
        ready(&browser, &url).await;
        let m = browser
            .js(
                "const nav = performance.getEntriesByType('navigation')[0];
                 const paint = Object.fromEntries(performance.getEntriesByType('paint').map(p => [p.name, p.startTime]));
                 const res = performance.getEntriesByType('resource');
                 const api = res.filter(r => new URL(r.name).pathname.startsWith('/api/') && !r.name.endsWith('/api/events'));
                 const assets = res.filter(r => !new URL(r.name).pathname.startsWith('/api/'));
                 const sum = (list) => list.reduce((n, r) => n + r.transferSize, 0);
                 return { page: nav.transferSize + sum(assets), api: sum(api),
                          fp: paint['first-paint'], fcp: paint['first-contentful-paint'] };",
                vec![],
            )
            .await;
        page_bytes = number(&m["page"]) as u64;
        api_bytes = number(&m["api"]) as u64;
        first_paint.push(number(&m["fp"]));
        contentful.push(number(&m["fcp"]));
        browser.close().await;
    }
    println!(
        "dashboard page_bytes={page_bytes} api_bytes={api_bytes} first_paint_ms_median={:.0} first_contentful_paint_ms_median={:.0} first_contentful_paint_ms_max={:.0} loads={loads}",
        median(&mut first_paint),
        median(&mut contentful),
        contentful.iter().copied().fold(0.0, f64::max),
    );
}

/// Opens the page and waits until it shows the loads, the hour grid and
/// the history, live.
async fn ready(browser: &Browser, url: &str) {
    browser.client.goto(url).await.expect("open the dashboard");
    browser
        .wait_until(
            "the dashboard filled in",
            "return document.getElementById('live').dataset.state === 'live'
                 && document.querySelectorAll('li[data-load] .timeline').length > 0
                 && document.querySelectorAll('#forecast td').length > 0
                 && document.querySelectorAll('#history tr td').length > 1",
            vec![],
        )
        .await;
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
