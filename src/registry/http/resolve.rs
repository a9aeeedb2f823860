//! Host name resolution that needs nothing from the C library at run time.
//!
//! A statically linked glibc program cannot load the NSS modules `getaddrinfo` depends on,
//! so on a bare edge host (or in a chroot) it would resolve nothing. This resolver reads
//! `/etc/hosts` and asks the nameservers in `/etc/resolv.conf` itself (UDP, TCP when the
//! answer is truncated), honouring `search`, `ndots`, `timeout` and `attempts`. Dynamically
//! linked builds fall back to the system resolver for names it cannot find (mDNS, LDAP...).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

#[derive(Debug, Clone)]
pub struct HostResolver {
    hosts_file: PathBuf,
    resolv_conf: PathBuf,
}

impl Default for HostResolver {
    fn default() -> Self {
        HostResolver {
            hosts_file: PathBuf::from("/etc/hosts"),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

impl HostResolver {
    /// Every address for `name`, from the hosts file first, then DNS.
    pub fn lookup(&self, name: &str, deadline: Option<Instant>) -> Vec<IpAddr> {
        let name = name.trim_end_matches('.');
        if let Ok(ip) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return vec![ip];
        }
        let hosts = std::fs::read_to_string(&self.hosts_file).unwrap_or_default();
        let found = hosts_lookup(&hosts, name);
        if !found.is_empty() {
            return found;
        }
        let conf =
            ResolvConf::parse(&std::fs::read_to_string(&self.resolv_conf).unwrap_or_default());
        let found = dns_lookup(&conf, name, deadline);
        if !found.is_empty() || cfg!(target_feature = "crt-static") {
            return found;
        }
        system_lookup(name)
    }
}

fn system_lookup(name: &str) -> Vec<IpAddr> {
    use std::net::ToSocketAddrs;
    (name, 0)
        .to_socket_addrs()
        .map(|a| a.map(|s| s.ip()).collect())
        .unwrap_or_default()
}

impl Resolver for HostResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri
            .host()
            .ok_or_else(|| ureq::Error::BadUri(uri.to_string()))?;
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        let deadline = timeout
            .not_zero()
            .and_then(|d| Instant::now().checked_add(*d));
        let mut result = self.empty();
        let family = config.ip_family();
        let addresses = self
            .lookup(host, deadline)
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port));
        for address in family.keep_wanted(addresses).take(16) {
            result.push(address);
        }
        if result.is_empty() {
            Err(ureq::Error::HostNotFound)
        } else {
            Ok(result)
        }
    }
}

/// Addresses for `name` in hosts-file text (names compare case-insensitively).
pub fn hosts_lookup(text: &str, name: &str) -> Vec<IpAddr> {
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(Ok(ip)) = fields
            .next()
            .map(|f| f.split('%').next().unwrap_or(f).parse::<IpAddr>())
        else {
            continue;
        };
        if fields.any(|alias| alias.eq_ignore_ascii_case(name)) && !found.contains(&ip) {
            found.push(ip);
        }
    }
    found
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
    pub timeout: Duration,
    pub attempts: u32,
}

impl ResolvConf {
    /// Parses resolv.conf(5); with no nameserver line the local one is used, as libc does.
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
        };
        for line in text.lines() {
            let mut fields = line
                .split(['#', ';'])
                .next()
                .unwrap_or("")
                .split_whitespace();
            match fields.next() {
                Some("nameserver") => {
                    if let Some(Ok(ip)) = fields
                        .next()
                        .map(|f| f.split('%').next().unwrap_or(f).parse())
                    {
                        conf.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => {
                    conf.search = fields
                        .map(|d| d.trim_end_matches('.').to_string())
                        .collect()
                }
                Some("options") => {
                    for option in fields {
                        let (key, value) = option.split_once(':').unwrap_or((option, ""));
                        let number = value.parse::<u64>().ok();
                        match (key, number) {
                            ("ndots", Some(n)) => conf.ndots = n.min(15) as usize,
                            ("timeout", Some(n)) => {
                                conf.timeout = Duration::from_secs(n.clamp(1, 30))
                            }
                            ("attempts", Some(n)) => conf.attempts = n.clamp(1, 5) as u32,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        conf.nameservers.truncate(3);
        if conf.nameservers.is_empty() {
            conf.nameservers.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        conf
    }

    /// The names to try, in order, for a name as typed (search list and ndots rule).
    pub fn candidates(&self, name: &str) -> Vec<String> {
        let absolute = name.to_string();
        let searched = self.search.iter().map(|domain| format!("{name}.{domain}"));
        if name.matches('.').count() >= self.ndots {
            std::iter::once(absolute).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(absolute)).collect()
        }
    }
}

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

fn dns_lookup(conf: &ResolvConf, name: &str, deadline: Option<Instant>) -> Vec<IpAddr> {
    for candidate in conf.candidates(name) {
        let mut found = Vec::new();
        let mut exists = false;
        for record_type in [TYPE_A, TYPE_AAAA] {
            if let Some(answer) = query(conf, &candidate, record_type, deadline) {
                exists |= answer.exists;
                found.extend(answer.addresses);
            }
        }
        if !found.is_empty() || exists {
            return found;
        }
    }
    Vec::new()
}

struct Answer {
    /// The name exists (NOERROR), even if it has no address of this type.
    exists: bool,
    addresses: Vec<IpAddr>,
}

fn query(
    conf: &ResolvConf,
    name: &str,
    record_type: u16,
    deadline: Option<Instant>,
) -> Option<Answer> {
    let id = query_id();
    let packet = encode_query(id, name, record_type)?;
    for _ in 0..conf.attempts {
        for server in &conf.nameservers {
            let wait = match deadline {
                Some(deadline) => deadline
                    .checked_duration_since(Instant::now())?
                    .min(conf.timeout),
                None => conf.timeout,
            };
            let Some(response) = exchange_udp(*server, &packet, wait) else {
                continue;
            };
            let parsed = match parse_response(&response, id) {
                Some(Parsed::Truncated) => exchange_tcp(*server, &packet, wait).and_then(|r| {
                    match parse_response(&r, id) {
                        Some(Parsed::Answer(answer)) => Some(answer),
                        _ => None,
                    }
                }),
                Some(Parsed::Answer(answer)) => Some(answer),
                None => None,
            };
            if parsed.is_some() {
                return parsed;
            }
        }
    }
    None
}

fn query_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(Instant::now().elapsed().as_nanos() as u64);
    hasher.finish() as u16
}

fn exchange_udp(server: IpAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let bind: SocketAddr = match server {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect((server, 53)).ok()?;
    socket
        .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
        .ok()?;
    socket.send(packet).ok()?;
    let mut buf = vec![0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn exchange_tcp(server: IpAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let wait = wait.max(Duration::from_millis(1));
    let mut stream = TcpStream::connect_timeout(&(server, 53).into(), wait).ok()?;
    stream.set_read_timeout(Some(wait)).ok()?;
    stream.set_write_timeout(Some(wait)).ok()?;
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    stream.write_all(&framed).ok()?;
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).ok()?;
    let mut response = vec![0u8; u16::from_be_bytes(length) as usize];
    stream.read_exact(&mut response).ok()?;
    Some(response)
}

/// A standard recursive query: one question, recursion desired.
pub fn encode_query(id: u16, name: &str, record_type: u16) -> Option<Vec<u8>> {
    let mut packet = Vec::with_capacity(32 + name.len());
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    if packet.len() > 12 + 255 {
        return None;
    }
    packet.extend_from_slice(&record_type.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    Some(packet)
}

enum Parsed {
    Truncated,
    Answer(Answer),
}

/// Reads the addresses out of a response. Every offset is checked: a hostile or broken
/// server must not be able to crash us.
fn parse_response(packet: &[u8], id: u16) -> Option<Parsed> {
    let u16_at = |at: usize| {
        packet
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    if u16_at(0)? != id {
        return None;
    }
    let flags = u16_at(2)?;
    if flags & 0x8000 == 0 {
        return None;
    }
    if flags & 0x0200 != 0 {
        return Some(Parsed::Truncated);
    }
    let rcode = flags & 0x000f;
    if rcode != 0 {
        // NXDOMAIN is an answer ("no such name"); other failures mean "ask elsewhere".
        return (rcode == 3).then_some(Parsed::Answer(Answer {
            exists: false,
            addresses: Vec::new(),
        }));
    }
    let questions = u16_at(4)?;
    let answers = u16_at(6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(packet, at)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        at = skip_name(packet, at)?;
        let record_type = u16_at(at)?;
        let length = u16_at(at + 8)? as usize;
        let data = packet.get(at + 10..at + 10 + length)?;
        match (record_type, data.len()) {
            (TYPE_A, 4) => addresses.push(IpAddr::from(<[u8; 4]>::try_from(data).ok()?)),
            (TYPE_AAAA, 16) => addresses.push(IpAddr::from(<[u8; 16]>::try_from(data).ok()?)),
            _ => {}
        }
        at += 10 + length;
    }
    Some(Parsed::Answer(Answer {
        exists: true,
        addresses,
    }))
}

/// The offset just after a (possibly compressed) name.
fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    for _ in 0..128 {
        let length = *packet.get(at)?;
        match length {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => {
                packet.get(at + 1)?;
                return Some(at + 2);
            }
            l if l & 0xc0 == 0 => at += 1 + l as usize,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_lookup_is_case_insensitive_and_skips_comments() {
        let hosts = "127.0.0.1 localhost\n# 10.0.0.9 registry.test\n10.0.0.5 Registry.Test reg # primary\n::1 localhost ip6-localhost\nbogus line\n";
        assert_eq!(
            hosts_lookup(hosts, "registry.test"),
            vec!["10.0.0.5".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(hosts_lookup(hosts, "reg").len(), 1);
        assert_eq!(hosts_lookup(hosts, "localhost").len(), 2);
        assert!(hosts_lookup(hosts, "missing").is_empty());
    }

    #[test]
    fn resolv_conf_options_and_search_order() {
        let conf = ResolvConf::parse(
            "nameserver 10.0.0.2\nnameserver fe80::1%eth0\nsearch corp.example lab.example\noptions ndots:2 timeout:3 attempts:4 rotate\n",
        );
        assert_eq!(conf.nameservers.len(), 2);
        assert_eq!(
            (conf.ndots, conf.timeout, conf.attempts),
            (2, Duration::from_secs(3), 4)
        );
        assert_eq!(
            conf.candidates("registry"),
            vec!["registry.corp.example", "registry.lab.example", "registry"]
        );
        assert_eq!(conf.candidates("a.b.c")[0], "a.b.c");
        assert_eq!(
            ResolvConf::parse("").nameservers,
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
        );
    }

    #[test]
    fn encodes_queries_and_rejects_bad_names() {
        let packet = encode_query(0x1234, "a.bc", TYPE_A).unwrap();
        assert_eq!(&packet[..2], &[0x12, 0x34]);
        assert_eq!(&packet[12..], &[1, b'a', 2, b'b', b'c', 0, 0, 1, 0, 1]);
        assert!(encode_query(1, "a..b", TYPE_A).is_none());
        assert!(encode_query(1, &"x".repeat(64), TYPE_A).is_none());
    }

    fn response(id: u16, flags: u16, answers: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&flags.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, answers.len() as u8, 0, 0, 0, 0]);
        p.extend_from_slice(&[3, b'r', b'e', b'g', 0, 0, 1, 0, 1]);
        for (kind, data) in answers {
            p.extend_from_slice(&[0xc0, 12]);
            p.extend_from_slice(&kind.to_be_bytes());
            p.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            p.extend_from_slice(&(data.len() as u16).to_be_bytes());
            p.extend_from_slice(data);
        }
        p
    }

    #[test]
    fn parses_answers_following_cnames_and_compression() {
        let cname = vec![3, b'x', b'y', b'z', 0];
        let packet = response(7, 0x8180, &[(5, cname), (TYPE_A, vec![10, 1, 2, 3])]);
        let Some(Parsed::Answer(answer)) = parse_response(&packet, 7) else {
            panic!("no answer")
        };
        assert_eq!(
            answer.addresses,
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        assert!(
            parse_response(&packet, 8).is_none(),
            "wrong id must be ignored"
        );
        assert!(matches!(
            parse_response(&response(7, 0x8183, &[]), 7),
            Some(Parsed::Answer(Answer { exists: false, .. }))
        ));
        assert!(matches!(
            parse_response(&response(7, 0x8380, &[]), 7),
            Some(Parsed::Truncated)
        ));
    }

    #[test]
    fn garbage_responses_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for length in 0..400 {
            let bytes: Vec<u8> = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = parse_response(
                &bytes,
                u16::from_be_bytes([
                    bytes.first().copied().unwrap_or(0),
                    bytes.get(1).copied().unwrap_or(0),
                ]),
            );
        }
    }
}
