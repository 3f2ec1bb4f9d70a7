//! dockfw-docker: Docker Engine API access. Not implemented yet: see issue 6.
