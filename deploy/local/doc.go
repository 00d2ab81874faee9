// Package local starts, finds and stops the real servers Meridian depends on — PostgreSQL 15, Redis
// and a Consul agent — as private processes on loopback ports with private data folders. The
// local-cluster launcher (cmd/meridian-local) and the test harness (deploy/local/testenv) both use it.
//
// Every server is a daemon: it outlives the process that started it, so `meridian-local up` can
// return while the cluster keeps running, and a later `down` finds each server again from nothing
// but its data folder. That is why each folder is self-describing: the ports and settings a
// server was started with are written next to its data (meridian.conf included by
// postgresql.conf, redis.conf, meridian-consul.json) together with a pid file, and Start on a
// folder whose server is alive and answering reuses it instead of starting a second one. Port 0 means "the port this folder used last time if it is
// free, else any free port", so a stopped cluster comes back on the same addresses.
//
// Consul runs with ACLs on and a default policy of deny, with a token per role kept in its data
// folder (tokens/<role>.token): both the local cluster and the tests talk to it as the component
// they are (consulacl.go, docs/security.md).
//
// PostgreSQL refuses to run as root. When the caller is root, initdb, pg_ctl and the postmaster run
// as the unprivileged `postgres` system user (created if missing) and the data folder is handed to
// that user; its ancestors get o+x (search, not read) where that user could not pass.
//
// Every wait watches ctx.Done() and has its own deadline, and every start error names the process,
// its port and the tail of its log file, because "it did not come up" is useless without the log.
package local
