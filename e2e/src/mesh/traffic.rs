//! Traffic from inside a pod: `curl` run with `ip netns exec` in the pod's network
//! namespace (as root, so the pod's iptables send it through its sidecar's outbound
//! listener, exactly like the app's own calls), one connection per request. Parsing,
//! tallies and percentiles are pure.

use std::collections::BTreeMap;
use std::time::Duration;

use super::MeshError;

/// What one request got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status (0 = no response: connect error or timeout).
    pub status: u16,
    /// `version` of the answering demo app, if the body is its report.
    pub version: Option<String>,
    /// `service` of the answering demo app.
    pub service: Option<String>,
    /// The body, trimmed (at most 200 bytes).
    pub body: String,
}

/// Marker curl prints after each body (`-w`), followed by the status code.
const MARK: &str = "@@weft-status ";

/// Parses curl output made with `-w '\n@@weft-status %{http_code}\n'`.
pub fn parse_replies(out: &str) -> Vec<Reply> {
    let mut replies = Vec::new();
    let mut body = String::new();
    for line in out.lines() {
        if let Some(code) = line.strip_prefix(MARK) {
            let v: Option<serde_json::Value> = serde_json::from_str(body.trim()).ok();
            let field = |k: &str| v.as_ref().and_then(|v| v[k].as_str()).map(str::to_string);
            replies.push(Reply {
                status: code.trim().parse().unwrap_or(0),
                version: field("version"),
                service: field("service"),
                body: body.trim().chars().take(200).collect(),
            });
            body.clear();
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    replies
}

/// One batch of requests from a pod's network namespace.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    /// The pod's network namespace.
    pub netns: &'a str,
    /// The URL (a project address or a Service name from the pod's hosts file).
    pub url: &'a str,
    /// How many requests.
    pub count: usize,
    /// Extra request headers (`name: value`).
    pub headers: &'a [&'a str],
    /// HTTP method.
    pub method: &'a str,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl<'a> Batch<'a> {
    /// `count` GETs of `url` from `netns`, 5 s each at most.
    pub fn get(netns: &'a str, url: &'a str, count: usize) -> Self {
        Self {
            netns,
            url,
            count,
            headers: &[],
            method: "GET",
            timeout: Duration::from_secs(5),
        }
    }

    /// The `ip` command line.
    pub fn argv(&self) -> Vec<String> {
        let mut a: Vec<String> = ["netns", "exec", self.netns, "curl", "-sS", "-X", self.method]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(["-m".into(), format!("{:.1}", self.timeout.as_secs_f64())]);
        a.extend(["-H".into(), "Connection: close".into()]);
        for h in self.headers {
            a.extend(["-H".into(), (*h).to_string()]);
        }
        a.extend(["-w".into(), format!("\\n{MARK}%{{http_code}}\\n")]);
        a.extend(std::iter::repeat_n(self.url.to_string(), self.count));
        a
    }

    /// Runs the batch (sequential requests, one connection each).
    pub async fn run(&self) -> Result<Vec<Reply>, MeshError> {
        let limit = self.timeout * (self.count as u32 + 1) + Duration::from_secs(5);
        let child = tokio::process::Command::new("ip")
            .args(self.argv())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(limit, child)
            .await
            .map_err(|_| {
                MeshError::Traffic(format!("curl in {} did not finish within {limit:?}", self.netns))
            })?
            .map_err(|e| MeshError::Traffic(format!("running ip netns exec curl: {e}")))?;
        let replies = parse_replies(&String::from_utf8_lossy(&out.stdout));
        if replies.len() != self.count {
            return Err(MeshError::Traffic(format!(
                "{} of {} requests to {} from {} reported: {}",
                replies.len(),
                self.count,
                self.url,
                self.netns,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(replies)
    }
}

/// Counts replies by answering version (`status-<code>` for other HTTP answers, `refused`
/// when no HTTP answer came: connection refused or reset, as a denying sidecar does).
pub fn tally(replies: &[Reply]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for r in replies {
        let key = match (&r.version, r.status) {
            (Some(v), 200) => v.clone(),
            (_, 0) => "refused".to_string(),
            (_, s) => format!("status-{s}"),
        };
        *t.entry(key).or_insert(0) += 1;
    }
    t
}

/// Fraction of replies with status 200.
pub fn success_ratio(replies: &[Reply]) -> f64 {
    if replies.is_empty() {
        return 0.0;
    }
    replies.iter().filter(|r| r.status == 200).count() as f64 / replies.len() as f64
}

/// The `p`-th percentile (0–100, nearest rank) of `samples`.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    if s.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// `a=12 b=38` (stable order).
pub fn format_tally(t: &BTreeMap<String, usize>) -> String {
    t.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bodies_statuses_and_failures() {
        let out = "{\"service\":\"app\",\"version\":\"v2\",\"pod\":\"p\"}\n@@weft-status 200\n\
                   no healthy upstream\nsecond line\n@@weft-status 503\n\n@@weft-status 000\n";
        let r = parse_replies(out);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].version.as_deref(), Some("v2"));
        assert_eq!(r[0].service.as_deref(), Some("app"));
        assert_eq!((r[1].status, r[1].version.as_deref()), (503, None));
        assert_eq!(r[1].body, "no healthy upstream\nsecond line");
        assert_eq!(r[2].status, 0);
        let t = tally(&r);
        assert_eq!(format_tally(&t), "refused=1 status-503=1 v2=1");
        assert!((success_ratio(&r) - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn argv_repeats_the_url_and_sets_headers() {
        let mut b = Batch::get("weft-pod-abc", "http://s.ns:8080/", 3);
        b.headers = &["end-user: jason"];
        let a = b.argv();
        assert_eq!(&a[..4], ["netns", "exec", "weft-pod-abc", "curl"]);
        assert_eq!(a.iter().filter(|x| *x == "http://s.ns:8080/").count(), 3);
        assert!(a.windows(2).any(|w| w[0] == "-H" && w[1] == "end-user: jason"));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&s, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&s, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&s, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
        assert_eq!(
            percentile(&[Duration::from_secs(1)], 99.0),
            Duration::from_secs(1)
        );
    }
}
