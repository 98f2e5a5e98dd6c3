//! `fleetroll report --html` of a real run, opened in headless Chromium:
//! the page loads without errors and draws a timeline.

use std::path::Path;
use std::process::Command;

use crate::fixture::{Fleet, FleetSpec, InventoryOptions};
use crate::rollout::{Workdir, playbook};

/// Renders `html` to a PNG with headless Chromium, with the network cut
/// off (every host resolves to nothing, every request goes to a closed
/// local port): returns Chromium's log.
fn screenshot(html: &Path, png: &Path, profile: &Path) -> String {
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--hide-scrollbars",
            "--window-size=1240,900",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium is installed by tests/setup.sh");
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "chromium failed:\n{log}");
    log
}

/// Pixels of the PNG as RGB triples.
fn pixels(png: &Path) -> Vec<[u8; 3]> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let channels = info.color_type.samples();
    buffer[..info.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect()
}

#[test]
fn the_report_of_a_real_run_renders_in_headless_chromium() {
    let fleet = Fleet::start(FleetSpec::new(2, 2));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &playbook("", "batch = [1, 2]"),
    );
    let run = work.run(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let html = work.path().join("report.html");
    let report = work.fleetroll(&["report", "-i", "inventory.toml", "--html", "report.html"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(
        page.matches("<rect class=\"updating\"").count(),
        4,
        "one bar per host"
    );

    let png = work.path().join("report.png");
    let log = screenshot(&html, &png, &work.path().join("chromium-profile"));
    for error in ["Uncaught", "CONSOLE", "Failed to load", "ERR_"] {
        assert!(
            !log.lines().any(|line| line.contains(error)),
            "{error} in Chromium's log:\n{log}"
        );
    }
    let pixels = pixels(&png);
    let count = |rgb: [u8; 3]| pixels.iter().filter(|p| **p == rgb).count();
    let white = count([255, 255, 255]);
    assert!(white < pixels.len(), "a blank page");
    // The updating bars (#3b7dd8) and verifying bars (#8e5bd0) are drawn.
    assert!(
        count([0x3b, 0x7d, 0xd8]) > 100,
        "no updating bar in the screenshot"
    );
    assert!(
        count([0x8e, 0x5b, 0xd0]) > 100,
        "no verifying bar in the screenshot"
    );
    if let Some(keep) = std::env::var_os("FLEETROLL_KEEP_REPORT") {
        std::fs::copy(&png, Path::new(&keep).with_extension("png")).unwrap();
        std::fs::copy(&html, Path::new(&keep).with_extension("html")).unwrap();
    }
}
