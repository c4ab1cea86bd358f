//! `--nodes`: joining a group of machines for data-parallel training (the addresses, node 0's
//! orchestrator).

use super::*;

/// Default port of the orchestrator (torchrun's default master port).
const ORCHESTRATOR_PORT: u16 = 29500;

/// `--nodes`, `--node-rank`, `--master-addr`, `--node-addr` as a node group (`None` for one
/// machine). Node 0 starts serving the orchestrator here, so the other nodes can join while it
/// reads its data.
pub(crate) fn join_nodes(args: &TrainArgs) -> Result<Option<NodeGroup>> {
    if args.nodes == 1 {
        if args.node_rank != 0 || args.master_addr.is_some() || args.node_addr.is_some() {
            bail!("--node-rank, --master-addr and --node-addr need --nodes 2 or more");
        }
        return Ok(None);
    }
    let master = args
        .master_addr
        .as_deref()
        .context("--nodes needs --master-addr HOST[:PORT] (node 0's address)")?;
    let (orchestrator_host, orchestrator_port) = host_port(master, "--master-addr")?;
    let orchestrator_port = orchestrator_port.unwrap_or(ORCHESTRATOR_PORT);
    let (host, port) = match args.node_addr.as_deref() {
        Some(a) => host_port(a, "--node-addr")?,
        None => (this_hostname()?, None),
    };
    if args.node_rank >= args.nodes {
        bail!(
            "--node-rank {} is not below --nodes {}",
            args.node_rank,
            args.nodes
        );
    }
    let port = match port {
        Some(p) => p,
        None => u16::try_from(u32::from(orchestrator_port) + 1 + args.node_rank).map_err(|_| {
            anyhow!(
                "--master-addr's port leaves no port for node {}; give --node-addr HOST:PORT",
                args.node_rank
            )
        })?,
    };
    let group = NodeGroup {
        nodes: args.nodes,
        rank: args.node_rank,
        orchestrator_host,
        orchestrator_port,
        host,
        port,
        stall_timeout: std::time::Duration::from_secs(args.node_timeout),
    };
    group.validate()?;
    // Burn's tensor service only logs a failed bind, and the group would then wait forever
    std::net::TcpListener::bind(("0.0.0.0", port)).with_context(|| {
        format!(
            "this node's port {port} cannot be opened; choose another with --node-addr HOST:PORT"
        )
    })?;
    if group.rank == 0 {
        group.serve_orchestrator(|| {
            eprintln!(
                "mole: the node group's orchestrator stopped (interrupted, or its server failed)"
            );
            std::process::exit(130);
        })?;
        tracing::info!("serving the node group's orchestrator on port {orchestrator_port}");
    }
    Ok(Some(group))
}

/// `HOST[:PORT]`; an IPv6 address in brackets (`[::1]:29500`).
fn host_port(text: &str, flag: &str) -> Result<(String, Option<u16>)> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .with_context(|| format!("{flag} {text}: no `]` after the IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .with_context(|| format!("{flag} {text}: expected [IPv6] or [IPv6]:PORT"))?,
            ),
        };
        (format!("[{ip}]"), port)
    } else {
        match text.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                bail!("{flag} {text}: write an IPv6 address in brackets, e.g. [::1]:29500")
            }
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (text.to_string(), None),
        }
    };
    if host.is_empty() || host.contains('/') {
        bail!("{flag} {text}: expected HOST or HOST:PORT");
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| anyhow!("{flag} {text}: `{p}` is not a port number"))
        })
        .transpose()?;
    Ok((host, port))
}

/// This machine's name, which the other nodes of a cluster usually resolve.
fn this_hostname() -> Result<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .context("cannot tell this machine's hostname: give --node-addr HOST")
}

#[cfg(test)]
mod node_address_tests {
    use super::host_port;

    #[test]
    fn hosts_ports_and_ipv6_brackets() {
        let hp = |t: &str| host_port(t, "--x").map_err(|e| e.to_string());
        assert_eq!(hp("node1").unwrap(), ("node1".into(), None));
        assert_eq!(
            hp("10.0.0.2:29500").unwrap(),
            ("10.0.0.2".into(), Some(29500))
        );
        assert_eq!(hp("[::1]").unwrap(), ("[::1]".into(), None));
        assert_eq!(hp("[::1]:29500").unwrap(), ("[::1]".into(), Some(29500)));
        assert!(hp("::1").unwrap_err().contains("brackets"));
        assert!(hp("node:http").unwrap_err().contains("not a port"));
        assert!(hp("[::1]x").is_err());
        assert!(hp(":29500").is_err());
    }
}
