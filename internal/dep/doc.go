// Package dep names the data a template or a backend can depend on: the
// queries (a health-filtered service, a KV prefix, the catalog's services...),
// the consul-template-compatible values they yield, and the Source interface
// that serves them. It does no I/O, so render, supervisor and the Consul
// watcher can share one vocabulary and fixtures can stand in for Consul.
package dep
