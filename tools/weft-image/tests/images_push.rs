//! `make push` against a real registry: `tools/images/push.sh` (what the target runs)
//! copies the three archives with skopeo to a CNCF Distribution registry on 127.0.0.1,
//! and the registry then serves each image under the archive's own manifest digest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use support::registry::Registry;

#[test]
fn push_copies_every_image_with_its_digest() {
    let cat = support::catalog();
    let reg = Registry::start();
    let tag = format!("push-test-{}", std::process::id());
    let out = support::run(
        Command::new("bash")
            .arg(support::repo_root().join("tools/images/push.sh"))
            .env("REGISTRY", &reg.addr)
            .env("TAG", &tag)
            .env("PUSH_FLAGS", "--dest-tls-verify=false"),
        Duration::from_secs(300),
    );
    assert!(out.ok, "push.sh failed: {}", out.text());
    for (name, e) in &cat.images {
        let dest = format!("{}/weft/{name}:{tag}", reg.addr);
        assert!(
            out.stdout
                .contains(&format!("push: {dest}@{}", e.manifest_digest)),
            "{name}: {}",
            out.stdout
        );
        let inspect = support::must(
            "skopeo",
            &["inspect", "--tls-verify=false", &format!("docker://{dest}")],
        );
        let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        assert_eq!(v["Digest"], e.manifest_digest.as_str(), "{name}: registry digest");
    }
}
