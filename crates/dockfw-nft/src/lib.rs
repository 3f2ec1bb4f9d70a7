//! dockfw-nft: the nftables backend (netlink). Not implemented yet: see issue 3.
