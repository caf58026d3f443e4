//! Golden tests for [`plan`]: the exact rules for defaults, exclusions, long port
//! lists and IPv6.

use super::super::restore::{NatState, render_install};
use super::super::spec::{CidrList, PortList};
use super::*;

fn defaults() -> Config {
    Config {
        inbound_port: 15006,
        outbound_port: 15001,
        admin_port: 15020,
        proxy_uid: 2102,
        skip_inbound_ports: vec![],
        skip_outbound_ports: vec![],
        skip_outbound_cidrs: vec![],
        ipv6: false,
    }
}

fn render(t: &Table) -> String {
    render_install(t, &NatState::default())
}

#[test]
fn golden_defaults() {
    let p = plan(&defaults());
    assert!(p.v6.is_none());
    let want = "\
*nat
:WEFT_INBOUND - [0:0]
:WEFT_IN_REDIRECT - [0:0]
:WEFT_OUTBOUND - [0:0]
:WEFT_OUT_REDIRECT - [0:0]
-A WEFT_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A WEFT_INBOUND -p tcp --dport 15020 -j RETURN
-A WEFT_INBOUND -p tcp -j WEFT_IN_REDIRECT
-A WEFT_OUT_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A WEFT_OUTBOUND -s 127.0.0.6/32 -o lo -m owner --uid-owner 2102 -j RETURN
-A WEFT_OUTBOUND -o lo ! -d 127.0.0.0/8 -m owner --uid-owner 2102 -j WEFT_INBOUND
-A WEFT_OUTBOUND -o lo -j RETURN
-A WEFT_OUTBOUND -m owner --uid-owner 2102 -j RETURN
-A WEFT_OUTBOUND -p tcp --dport 15020 -j RETURN
-A WEFT_OUTBOUND -p tcp -j WEFT_OUT_REDIRECT
-A PREROUTING -p tcp -j WEFT_INBOUND
-A OUTPUT -p tcp -j WEFT_OUTBOUND
COMMIT
";
    assert_eq!(render(&p.v4), want);
}

#[test]
fn golden_exclusions_and_custom_ports() {
    let cfg = Config {
        inbound_port: 16006,
        outbound_port: 16001,
        admin_port: 16020,
        proxy_uid: 1337,
        skip_inbound_ports: "8081,9000-9100,16020".parse::<PortList>().unwrap().0,
        skip_outbound_ports: "5432".parse::<PortList>().unwrap().0,
        skip_outbound_cidrs: "198.19.7.0/24,fd00::/8".parse::<CidrList>().unwrap().0,
        ipv6: false,
    };
    let want = "\
-A WEFT_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006
-A WEFT_INBOUND -p tcp -m multiport --dports 16020,8081,9000:9100 -j RETURN
-A WEFT_INBOUND -p tcp -j WEFT_IN_REDIRECT
-A WEFT_OUT_REDIRECT -p tcp -j REDIRECT --to-ports 16001
-A WEFT_OUTBOUND -s 127.0.0.6/32 -o lo -m owner --uid-owner 1337 -j RETURN
-A WEFT_OUTBOUND -o lo ! -d 127.0.0.0/8 -m owner --uid-owner 1337 -j WEFT_INBOUND
-A WEFT_OUTBOUND -o lo -j RETURN
-A WEFT_OUTBOUND -m owner --uid-owner 1337 -j RETURN
-A WEFT_OUTBOUND -p tcp --dport 16020 -j RETURN
-A WEFT_OUTBOUND -d 198.19.7.0/24 -j RETURN
-A WEFT_OUTBOUND -p tcp --dport 5432 -j RETURN
-A WEFT_OUTBOUND -p tcp -j WEFT_OUT_REDIRECT";
    assert_eq!(plan(&cfg).v4.rules.join("\n"), want);
}

#[test]
fn golden_more_than_fifteen_ports_are_chunked() {
    let list: String = (8001..=8020).map(|p| p.to_string()).collect::<Vec<_>>().join(",");
    let cfg = Config {
        skip_inbound_ports: list.parse::<PortList>().unwrap().0,
        skip_outbound_ports: list.parse::<PortList>().unwrap().0,
        ..defaults()
    };
    let rules = plan(&cfg).v4.rules;
    let inbound: Vec<&String> = rules
        .iter()
        .filter(|r| r.starts_with("-A WEFT_INBOUND -p tcp -m"))
        .collect();
    assert_eq!(
        inbound,
        vec![
            "-A WEFT_INBOUND -p tcp -m multiport --dports \
             15020,8001,8002,8003,8004,8005,8006,8007,8008,8009,8010,8011,8012,8013,8014 -j RETURN",
            "-A WEFT_INBOUND -p tcp -m multiport --dports 8015,8016,8017,8018,8019,8020 -j RETURN",
        ]
    );
    let outbound: Vec<&String> = rules
        .iter()
        .filter(|r| r.starts_with("-A WEFT_OUTBOUND -p tcp -m"))
        .collect();
    assert_eq!(
        outbound,
        vec![
            "-A WEFT_OUTBOUND -p tcp -m multiport --dports \
             8001,8002,8003,8004,8005,8006,8007,8008,8009,8010,8011,8012,8013,8014,8015 -j RETURN",
            "-A WEFT_OUTBOUND -p tcp -m multiport --dports 8016,8017,8018,8019,8020 -j RETURN",
        ]
    );
}

#[test]
fn golden_ipv6() {
    let cfg = Config {
        skip_outbound_cidrs: "198.19.7.0/24,fd00::/8".parse::<CidrList>().unwrap().0,
        ipv6: true,
        ..defaults()
    };
    let p = plan(&cfg);
    assert!(p.v4.rules.iter().all(|r| !r.contains("fd00")));
    let v6 = p.v6.unwrap();
    assert_eq!(v6.family, Family::V6);
    let want = "\
-A WEFT_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A WEFT_INBOUND -p tcp --dport 15020 -j RETURN
-A WEFT_INBOUND -p tcp -j WEFT_IN_REDIRECT
-A WEFT_OUT_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A WEFT_OUTBOUND -s ::1/128 -o lo -m owner --uid-owner 2102 -j RETURN
-A WEFT_OUTBOUND -o lo ! -d ::1/128 -m owner --uid-owner 2102 -j WEFT_INBOUND
-A WEFT_OUTBOUND -o lo -j RETURN
-A WEFT_OUTBOUND -m owner --uid-owner 2102 -j RETURN
-A WEFT_OUTBOUND -p tcp --dport 15020 -j RETURN
-A WEFT_OUTBOUND -d fd00::/8 -j RETURN
-A WEFT_OUTBOUND -p tcp -j WEFT_OUT_REDIRECT";
    assert_eq!(v6.rules.join("\n"), want);
    assert_eq!(v6.jumps, p.v4.jumps);
}
