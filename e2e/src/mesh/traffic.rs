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
    /// `pod` of the answering demo app.
    pub pod: Option<String>,
    /// Time from the request's start to its last byte, as curl measured it.
    pub took: Option<Duration>,
    /// The request headers the answering demo app saw (its report's `headers`).
    pub headers: BTreeMap<String, String>,
    /// The body, trimmed (at most 200 bytes).
    pub body: String,
}

/// Marker curl prints after each body (`-w`), followed by the status code.
const MARK: &str = "@@weft-status ";

/// Parses curl output made with `-w '\n@@weft-status %{http_code} %{time_total}\n'`.
pub fn parse_replies(out: &str) -> Vec<Reply> {
    let mut replies = Vec::new();
    let mut body = String::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix(MARK) {
            let v: Option<serde_json::Value> = serde_json::from_str(body.trim()).ok();
            let field = |k: &str| v.as_ref().and_then(|v| v[k].as_str()).map(str::to_string);
            let mut words = rest.split_whitespace();
            let status = words.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            let took = words
                .next()
                .and_then(|t| t.parse::<f64>().ok())
                .filter(|t| t.is_finite() && *t >= 0.0)
                .map(Duration::from_secs_f64);
            replies.push(Reply {
                status,
                version: field("version"),
                service: field("service"),
                pod: field("pod"),
                took,
                headers: v
                    .as_ref()
                    .and_then(|v| v["headers"].as_object())
                    .map(|h| {
                        h.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default(),
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

/// One batch of requests from a pod's network namespace (or from the host: outside the
/// mesh, as a client of an ingress gateway is).
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    /// The pod's network namespace; empty = the host's.
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
    /// A curl cookie jar file read and written across the batch (`-b`/`-c`), so a cookie
    /// set by one response is sent with the next request.
    pub cookie_jar: Option<&'a str>,
    /// More curl arguments (e.g. `--resolve`, `--cacert`).
    pub curl_args: &'a [&'a str],
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
            cookie_jar: None,
            curl_args: &[],
        }
    }

    /// `count` GETs of `url` from the host (outside every pod), 5 s each at most.
    pub fn from_host(url: &'a str, count: usize) -> Self {
        Self::get("", url, count)
    }

    /// The program and its arguments: `ip netns exec <netns> curl …`, or `curl …` on the host.
    pub fn command(&self) -> (&'static str, Vec<String>) {
        let mut argv = self.argv();
        if self.netns.is_empty() {
            argv.drain(..4);
            ("curl", argv)
        } else {
            ("ip", argv)
        }
    }

    /// The `ip` command line.
    pub fn argv(&self) -> Vec<String> {
        let mut a: Vec<String> = ["netns", "exec", self.netns, "curl", "-sS", "-X", self.method]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(self.curl_args.iter().map(|s| s.to_string()));
        a.extend(["-m".into(), format!("{:.1}", self.timeout.as_secs_f64())]);
        a.extend(["-H".into(), "Connection: close".into()]);
        for h in self.headers {
            a.extend(["-H".into(), (*h).to_string()]);
        }
        if let Some(jar) = self.cookie_jar {
            a.extend(["-b".into(), jar.to_string(), "-c".into(), jar.to_string()]);
        }
        a.extend(["-w".into(), format!("\\n{MARK}%{{http_code}} %{{time_total}}\\n")]);
        a.extend(std::iter::repeat_n(self.url.to_string(), self.count));
        a
    }

    /// Runs the batch (sequential requests, one connection each).
    pub async fn run(&self) -> Result<Vec<Reply>, MeshError> {
        let limit = self.timeout * (self.count as u32 + 1) + Duration::from_secs(5);
        let (program, args) = self.command();
        let child = tokio::process::Command::new(program)
            .args(args)
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

/// The Prometheus text a sidecar serves (`GET http://127.0.0.1:15020/metrics` from inside
/// the pod's network namespace `netns`).
pub async fn sidecar_metrics(netns: &str) -> Result<String, MeshError> {
    let out = tokio::process::Command::new("ip")
        .args(["netns", "exec", netns, "curl", "-sS", "-f", "-m", "5"])
        .arg("http://127.0.0.1:15020/metrics")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(8), out)
        .await
        .map_err(|_| MeshError::Traffic(format!("metrics of {netns} timed out")))?
        .map_err(|e| MeshError::Traffic(format!("running curl in {netns}: {e}")))?;
    if !out.status.success() {
        return Err(MeshError::Traffic(format!(
            "metrics of {netns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The sum of the samples of metric `name` whose labels include every `key="value"` of
/// `labels` (Prometheus text format).
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (set, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let mine: Vec<&str> = split_labels(set);
            labels
                .iter()
                .all(|want| mine.contains(want))
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// `a="1",b="x,y"` → `["a=\"1\"", "b=\"x,y\""]` (commas inside quotes kept).
fn split_labels(set: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in set.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&set[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < set.len() {
        out.push(&set[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bodies_statuses_and_failures() {
        let out = "{\"service\":\"app\",\"version\":\"v2\",\"pod\":\"p\",\"headers\":{\"x-a\":\"1\"}}\n@@weft-status 200 0.250\n\
                   no healthy upstream\nsecond line\n@@weft-status 503\n\n@@weft-status 000\n";
        let r = parse_replies(out);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].version.as_deref(), Some("v2"));
        assert_eq!(r[0].service.as_deref(), Some("app"));
        assert_eq!(r[0].pod.as_deref(), Some("p"));
        assert_eq!(r[0].took, Some(Duration::from_millis(250)));
        assert_eq!(r[0].headers.get("x-a").map(String::as_str), Some("1"));
        assert!(r[1].headers.is_empty());
        assert_eq!(r[1].took, None);
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
        assert!(!a.iter().any(|x| x == "-b"));
        b.cookie_jar = Some("/tmp/jar");
        let a = b.argv();
        assert!(a.windows(2).any(|w| w[0] == "-b" && w[1] == "/tmp/jar"));
        assert!(a.windows(2).any(|w| w[0] == "-c" && w[1] == "/tmp/jar"));
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

    #[test]
    fn sums_matching_metric_samples() {
        let text = "# HELP x X.\nx_total{kind=\"abort\",dst=\"a,b\"} 3\nx_total{kind=\"delay\",dst=\"a,b\"} 4\n\
                    x_total{kind=\"abort\",dst=\"c\"} 5\nx_total_other{kind=\"abort\"} 9\ny 2\n";
        assert_eq!(metric_sum(text, "x_total", &["kind=\"abort\""]), 8.0);
        assert_eq!(
            metric_sum(text, "x_total", &["kind=\"abort\"", "dst=\"a,b\""]),
            3.0
        );
        assert_eq!(metric_sum(text, "x_total", &[]), 12.0);
        assert_eq!(metric_sum(text, "y", &[]), 2.0);
        assert_eq!(metric_sum(text, "z", &[]), 0.0);
    }
}
