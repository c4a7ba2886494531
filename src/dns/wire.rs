//! The DNS wire format (RFC 1035) for the little the cluster DNS needs: a
//! query's header and question, and a response with A, AAAA, SRV, PTR and
//! SOA records. Names are written uncompressed.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("message too short")]
    Short,
    #[error("bad name")]
    BadName,
    #[error("not a query")]
    NotQuery,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub id: u16,
    /// The flags word as received.
    pub flags: u16,
    /// Lower-cased, no trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The question exactly as received (echoed back).
    pub question: Vec<u8>,
}

fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), WireError> {
    let mut labels = Vec::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(pos).ok_or(WireError::Short)? as usize;
        if len == 0 {
            pos += 1;
            break;
        }
        if len & 0xc0 == 0xc0 {
            let lo = *msg.get(pos + 1).ok_or(WireError::Short)? as usize;
            end.get_or_insert(pos + 2);
            pos = ((len & 0x3f) << 8) | lo;
            jumps += 1;
            if jumps > 16 {
                return Err(WireError::BadName);
            }
            continue;
        }
        if len > 63 {
            return Err(WireError::BadName);
        }
        let label = msg.get(pos + 1..pos + 1 + len).ok_or(WireError::Short)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += 1 + len;
    }
    Ok((labels.join("."), end.unwrap_or(pos)))
}

/// The first question of a query.
pub fn parse_query(msg: &[u8]) -> Result<Query, WireError> {
    if msg.len() < 12 {
        return Err(WireError::Short);
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    if flags & 0x8000 != 0 || qdcount == 0 {
        return Err(WireError::NotQuery);
    }
    let (name, pos) = read_name(msg, 12)?;
    let tail = msg.get(pos..pos + 4).ok_or(WireError::Short)?;
    Ok(Query {
        id,
        flags,
        name,
        qtype: u16::from_be_bytes([tail[0], tail[1]]),
        qclass: u16::from_be_bytes([tail[2], tail[3]]),
        question: msg[12..pos + 4].to_vec(),
    })
}

#[derive(Debug, Clone, PartialEq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Ptr(String),
    Soa {
        mname: String,
        rname: String,
        serial: u32,
    },
}

impl RData {
    pub fn rtype(&self) -> u16 {
        match self {
            RData::A(_) => TYPE_A,
            RData::Aaaa(_) => TYPE_AAAA,
            RData::Srv { .. } => TYPE_SRV,
            RData::Ptr(_) => TYPE_PTR,
            RData::Soa { .. } => TYPE_SOA,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub data: RData,
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out.push(0);
}

fn write_record(out: &mut Vec<u8>, r: &Record) {
    write_name(out, &r.name);
    out.extend_from_slice(&r.data.rtype().to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&r.ttl.to_be_bytes());
    let mut data = Vec::new();
    match &r.data {
        RData::A(a) => data.extend_from_slice(&a.octets()),
        RData::Aaaa(a) => data.extend_from_slice(&a.octets()),
        RData::Srv {
            priority,
            weight,
            port,
            target,
        } => {
            data.extend_from_slice(&priority.to_be_bytes());
            data.extend_from_slice(&weight.to_be_bytes());
            data.extend_from_slice(&port.to_be_bytes());
            write_name(&mut data, target);
        }
        RData::Ptr(n) => write_name(&mut data, n),
        RData::Soa {
            mname,
            rname,
            serial,
        } => {
            write_name(&mut data, mname);
            write_name(&mut data, rname);
            for v in [*serial, 7200, 1800, 86400, 5] {
                data.extend_from_slice(&v.to_be_bytes());
            }
        }
    }
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(&data);
}

/// A response to `q`: authoritative (or not), with `rcode`, the answers
/// and the authority section; truncated (TC, answers dropped) past `limit`
/// bytes.
pub fn response(
    q: &Query,
    authoritative: bool,
    rcode: u8,
    answers: &[Record],
    authority: &[Record],
    limit: usize,
) -> Vec<u8> {
    let build = |answers: &[Record], authority: &[Record], tc: bool| {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&q.id.to_be_bytes());
        // QR, the opcode and RD copied, AA, TC, RA, the rcode.
        let mut flags: u16 = 0x8000 | (q.flags & 0x7900) | 0x0080 | u16::from(rcode & 0x0f);
        if authoritative {
            flags |= 0x0400;
        }
        if tc {
            flags |= 0x0200;
        }
        out.extend_from_slice(&flags.to_be_bytes());
        for n in [1, answers.len(), authority.len(), 0] {
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        out.extend_from_slice(&q.question);
        for r in answers.iter().chain(authority) {
            write_record(&mut out, r);
        }
        out
    };
    let full = build(answers, authority, false);
    if full.len() <= limit {
        return full;
    }
    build(&[], &[], true)
}

/// An error response (FORMERR, SERVFAIL) to a message that may not parse:
/// its id and question echoed when they can be read.
pub fn error_response(msg: &[u8], rcode: u8) -> Option<Vec<u8>> {
    if msg.len() < 12 {
        return None;
    }
    let mut out = msg[..4].to_vec();
    out[2] = 0x80 | (msg[2] & 0x79);
    out[3] = 0x80 | (rcode & 0x0f);
    out.extend_from_slice(&[0; 8]);
    Some(out)
}

/// The UDP payload size a query's EDNS OPT record offers (512 without).
pub fn udp_limit(msg: &[u8]) -> usize {
    // The OPT record is the last additional record: type 41, its class
    // the size. Look for it after the question.
    let Ok(q) = parse_query(msg) else { return 512 };
    let arcount = u16::from_be_bytes([msg[10], msg[11]]);
    let ancount = u16::from_be_bytes([msg[6], msg[7]]);
    let nscount = u16::from_be_bytes([msg[8], msg[9]]);
    if arcount == 0 || ancount != 0 || nscount != 0 {
        return 512;
    }
    let pos = 12 + q.question.len();
    // An OPT record's name is the root (one zero byte).
    match msg.get(pos..pos + 5) {
        Some([0, 0, 41, hi, lo]) => usize::from(u16::from_be_bytes([*hi, *lo])).clamp(512, 4096),
        _ => 512,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut out = id.to_be_bytes().to_vec();
        out.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        write_name(&mut out, name);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out
    }

    #[test]
    fn parses_a_query_and_answers_it() {
        let msg = query(7, "Web.Default.svc.cluster.local", TYPE_A);
        let q = parse_query(&msg).unwrap();
        assert_eq!(q.name, "web.default.svc.cluster.local");
        assert_eq!((q.id, q.qtype, q.qclass), (7, TYPE_A, CLASS_IN));
        let r = Record {
            name: q.name.clone(),
            ttl: 5,
            data: RData::A(Ipv4Addr::new(10, 96, 0, 5)),
        };
        let resp = response(&q, true, 0, &[r], &[], 512);
        assert_eq!(&resp[..2], &[0, 7]);
        assert_eq!(resp[2] & 0x84, 0x84, "QR and AA");
        assert_eq!(&resp[6..8], &[0, 1], "one answer");
        assert_eq!(&resp[resp.len() - 4..], &[10, 96, 0, 5]);
    }

    #[test]
    fn bad_messages_are_errors_not_panics() {
        assert_eq!(parse_query(&[0; 5]), Err(WireError::Short));
        let mut msg = query(1, "a.b", TYPE_A);
        msg.truncate(15);
        assert!(parse_query(&msg).is_err());
        // A compression loop.
        let mut looped = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
        assert_eq!(parse_query(&looped), Err(WireError::BadName));
        looped[2] = 0x81;
        assert_eq!(parse_query(&looped), Err(WireError::NotQuery));
    }

    #[test]
    fn truncates_past_the_limit() {
        let q = parse_query(&query(1, "x.cluster.local", TYPE_A)).unwrap();
        let many: Vec<Record> = (0..100)
            .map(|i| Record {
                name: q.name.clone(),
                ttl: 5,
                data: RData::A(Ipv4Addr::new(10, 0, 0, i)),
            })
            .collect();
        let resp = response(&q, true, 0, &many, &[], 512);
        assert!(resp.len() <= 512);
        assert_eq!(resp[2] & 0x02, 0x02, "TC");
    }
}
