// Package templates ships autopilot's stock templates (nginx.conf.tmpl,
// haproxy.cfg.tmpl); it has no code, only their golden tests.
package templates
