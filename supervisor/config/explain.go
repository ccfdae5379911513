package config

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Explain writes what the config became, for `autopilot check -explain`:
// every job (name, trigger, restart policy, registration, health), watch,
// template and the telemetry endpoint, so a user sees how a ContainerPilot
// 2 config was understood. Service IDs show the host name as HOSTNAME.
func (c *Config) Explain(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s config\n", c.Name, c.Dialect)
	consul := c.Consul
	if consul == "" {
		consul = "(consul/api default, CONSUL_HTTP_ADDR)"
	}
	fmt.Fprintf(&b, "consul: %s\n", consul)
	if c.ConsulClient.Token != "" {
		b.WriteString("consul token: set (not shown)\n")
	}
	fmt.Fprintf(&b, "logging: level %s, format %s, output %s\n", c.Logging.Level, c.Logging.Format, c.Logging.Output)
	fmt.Fprintf(&b, "stopTimeout: %s\n", dur(c.StopTimeout))
	if len(c.Templates) > 0 {
		fmt.Fprintf(&b, "renderTimeout: %s\n", dur(c.RenderTimeout))
	}
	fmt.Fprintf(&b, "\njobs:\n")
	if len(c.Jobs) == 0 {
		b.WriteString("  (none)\n")
	}
	for i := range c.Jobs {
		j := &c.Jobs[i]
		title := j.Name
		if j.Main {
			title += " (main: its exit ends the run)"
		}
		fmt.Fprintf(&b, "  %s\n", title)
		exec := j.Exec.String()
		switch {
		case j.Main && j.Exec.IsZero():
			exec = "the command given on the command line"
		case j.Exec.IsZero():
			exec = "none (registers a process another job runs)"
		}
		row(&b, "exec", exec)
		row(&b, "when", j.When.String())
		if j.When.Timeout > 0 {
			row(&b, "when timeout", dur(j.When.Timeout))
		}
		if !j.Exec.IsZero() || j.Main {
			row(&b, "restarts", j.Restarts.String())
			if j.Timeout > 0 {
				row(&b, "timeout", dur(j.Timeout))
			}
			row(&b, "stop", "SIGTERM, then SIGKILL after "+dur(j.StopTimeout))
		}
		if j.Port > 0 {
			reg := fmt.Sprintf("service %s, id %s, port %d", j.Name, c.ServiceID(j, "HOSTNAME"), j.Port)
			if len(j.Tags) > 0 {
				reg += ", tags " + strings.Join(j.Tags, ",")
			}
			ifs := "default (eth0, inet, 127.0.0.1)"
			if len(j.Interfaces) > 0 {
				var s []string
				for _, i := range j.Interfaces {
					s = append(s, i.String())
				}
				ifs = strings.Join(s, ", ")
			}
			reg += ", interfaces " + ifs
			if j.InitialStatus != "" {
				reg += ", initially " + j.InitialStatus
			}
			if j.Consul.EnableTagOverride {
				reg += ", enableTagOverride"
			}
			if d := j.Consul.DeregisterCriticalServiceAfter; d > 0 {
				reg += ", deregistered after " + dur(d) + " critical"
			}
			row(&b, "register", reg)
			row(&b, "address in", c.IPEnvVar(j.Name))
		}
		if h := j.Health; h != nil {
			row(&b, "health", fmt.Sprintf("%s every %s, timeout %s, ttl %s", h.Exec, dur(h.Interval), dur(h.Timeout), dur(h.TTL)))
		}
		if j.Sensor != "" {
			row(&b, "feeds metric", j.Sensor)
		}
		if j.RawOutput {
			row(&b, "output", "raw")
		}
	}
	if len(c.Watches) > 0 {
		b.WriteString("\nwatches:\n")
		for _, w := range c.Watches {
			s := fmt.Sprintf("  watch.%s: healthy instances of %s", w.Name, w.Name)
			if w.Tag != "" {
				s += " tagged " + w.Tag
			}
			if w.DC != "" {
				s += " in " + w.DC
			}
			if w.Interval > 0 {
				s += ", at most one change every " + dur(w.Interval)
			}
			b.WriteString(s + "\n")
		}
	}
	if len(c.Templates) > 0 {
		b.WriteString("\ntemplates:\n")
		for _, t := range c.Templates {
			fmt.Fprintf(&b, "  %s -> %s\n", t.Source, t.Destination)
			if !t.Check.IsZero() {
				row(&b, "check", fmt.Sprintf("%s (timeout %s)", t.Check, dur(t.CheckTimeout)))
			}
			if !t.Reload.IsZero() {
				row(&b, "reload", t.Reload.String())
			}
			if t.ReloadSignal != 0 {
				row(&b, "reload", SignalName(t.ReloadSignal)+" to the main job")
			}
			if t.Wait.Min > 0 {
				row(&b, "wait", dur(t.Wait.Min)+":"+dur(t.Wait.Max))
			}
			if t.Perms != 0 {
				row(&b, "perms", fmt.Sprintf("%04o", t.Perms))
			}
			if t.MinInstances > 0 {
				row(&b, "minInstances", fmt.Sprint(t.MinInstances))
			}
		}
	}
	if t := c.Telemetry; t != nil {
		fmt.Fprintf(&b, "\ntelemetry: port %d", t.Port)
		if len(t.Tags) > 0 {
			fmt.Fprintf(&b, ", tags %s", strings.Join(t.Tags, ","))
		}
		b.WriteString("\n")
		for _, m := range t.Metrics {
			fmt.Fprintf(&b, "  metric %s (%s): %s\n", m.FullName(), m.Type, m.Help)
		}
	}
	if c.Dialect == ContainerPilot3 {
		fmt.Fprintf(&b, "\ncontrol socket: %s\n", c.Control.Socket)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func row(b *strings.Builder, k, v string) { fmt.Fprintf(b, "    %-13s %s\n", k+":", v) }

// String is the trigger as a sentence.
func (w When) String() string {
	if w.Interval > 0 {
		return "every " + dur(w.Interval)
	}
	mode := "once"
	if w.Each {
		mode = "each"
	}
	if w.Source == "" {
		return fmt.Sprintf("%s %s", mode, w.Event)
	}
	return fmt.Sprintf("%s %s of %s", mode, w.Event, w.Source)
}

func dur(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	return d.String()
}
