//! The sandbox's DNS config (kubelet/network/dns/dns.go).
