// Package templates ships autopilot's stock templates (nginx.conf.tmpl,
// haproxy.cfg.tmpl, and haproxy-runtime.cfg.tmpl for hitless HAProxy
// updates); it has no code, only their golden tests.
package templates
