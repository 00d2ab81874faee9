// Package upstream knows the API nodes of every region and picks one per request.
//
// Regions holds one Pool per region of the topology. The nodes come from internal/discovery: the
// passing instances of each region's API service in Consul, followed with blocking queries, so a node
// whose check fails leaves the pool within Consul's check interval and a new one joins without a
// restart. Consul is never called per request: each region's pool is an immutable slice swapped
// atomically when Consul answers; this package adds what picking needs on top (in-flight counts,
// ejections, breakers), kept for every node that stays.
//
// Picking is power of two choices on in-flight requests (Mitzenmacher): two random nodes, the less busy
// wins, which spreads load almost as well as least-loaded without scanning or a shared lock.
//
// Two passive defences keep a bad node out between Consul's checks:
//   - Outlier ejection: connection failures (refused, reset, no answer) eject a node at once for a
//     connection that could not even be opened, or after EjectAfter consecutive others. An ejection lasts
//     EjectBase, doubling with each ejection in a row up to EjectMax, like Envoy's outlier detection.
//   - A circuit breaker per node (internal/breaker): consecutive failures of any kind, including a node that
//     answers 502/503/504 or too late, open the circuit for a while; then one probe decides.
//
// A region whose nodes are all gone, ejected or open is down: Pick says so at once (ErrRegionDown)
// with how long until a node may be tried again, so the router answers 503 without waiting on a
// timeout. Nodes of one region are never used for another.
package upstream
