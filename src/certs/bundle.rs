//! The trust bundle distributed as `ca.crt`: one or more PEM root certificates.
//! Holding the old and the new root at once is what makes a CA rotation
//! outage-free (every proxy trusts both while certificates are re-issued).

/// Splits a PEM text into its certificate blocks (normalised, in order).
pub fn certificates(pem: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else { break };
        let block = &rest[start..start + len + END.len()];
        out.push(format!("{}\n", block.trim()));
        rest = &rest[start + len + END.len()..];
    }
    out
}

/// Builds a bundle from roots: de-duplicated, `first` always first.
pub fn build(first: &str, others: &str) -> String {
    let mut roots = certificates(first);
    for c in certificates(others) {
        if !roots.contains(&c) {
            roots.push(c);
        }
    }
    roots.concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::MeshCa;
    use time::OffsetDateTime;

    #[test]
    fn bundles_deduplicate_and_keep_the_signing_root_first() {
        let a = MeshCa::generate("td", OffsetDateTime::now_utc()).unwrap();
        let b = MeshCa::generate("td", OffsetDateTime::now_utc()).unwrap();
        let both = build(a.cert_pem(), &format!("{}{}", b.cert_pem(), a.cert_pem()));
        let certs = certificates(&both);
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].trim(), a.cert_pem().trim());
        assert_eq!(build(a.cert_pem(), ""), certificates(a.cert_pem()).concat());
    }
}
