package proc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/template"
)

// Command is a program and its arguments, run directly (never through a shell).
//
// In JSON config a command is either a string, split on whitespace by
// [ParseCommand], or an array of strings taken as argv unchanged. The zero
// Command means "no command": it is what a missing or null field leaves.
type Command struct {
	Argv []string
}

// ParseCommand splits s into argv on whitespace. There is no shell and no
// quoting: arguments that contain spaces need the JSON array form.
//
// Because a quote would silently become part of an argument (`sh -c 'a b'`
// would run sh with the arguments -c, 'a and b'), quotes outside template
// actions are rejected rather than passed on. Template actions such as
// `{{ .Path }}` are kept whole even if they contain spaces, so that
// [Command.Expand] sees them intact.
//
// An empty or all-blank s is an error: an absent command is written by
// leaving the field out (or null), not as "".
func ParseCommand(s string) (Command, error) {
	argv, err := splitArgs(s)
	if err != nil {
		return Command{}, fmt.Errorf("command %q: %w", s, err)
	}
	if len(argv) == 0 {
		return Command{}, fmt.Errorf("command %q: empty; expected a program and its arguments", s)
	}
	return Command{Argv: argv}, nil
}

// splitArgs splits s on whitespace outside {{ }} actions.
func splitArgs(s string) ([]string, error) {
	var (
		argv     []string
		cur      strings.Builder
		inArg    bool // cur holds a (possibly empty-so-far) argument
		inAction bool // between {{ and }}
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inAction:
			cur.WriteByte(c)
			if c == '}' && i+1 < len(s) && s[i+1] == '}' {
				cur.WriteByte('}')
				i++
				inAction = false
			}
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			cur.WriteString("{{")
			i++
			inArg, inAction = true, true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			if inArg {
				argv = append(argv, cur.String())
				cur.Reset()
				inArg = false
			}
		case c == '"' || c == '\'' || c == '`':
			return nil, fmt.Errorf("quote at offset %d: quotes are not interpreted (no shell); use the array form [\"prog\", \"arg with spaces\"]", i)
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inAction {
		return nil, errors.New(`unclosed "{{": expected a matching "}}"`)
	}
	if inArg {
		argv = append(argv, cur.String())
	}
	return argv, nil
}

// UnmarshalJSON accepts a string (see [ParseCommand]) or a non-empty array of
// strings. JSON null leaves c unchanged, as encoding/json expects.
func (c *Command) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch kind := jsonKind(data); kind {
	case "null":
		return nil
	case "a string":
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return fmt.Errorf("invalid command: %w", err)
		}
		cmd, err := ParseCommand(s)
		if err != nil {
			return fmt.Errorf("invalid %w", err)
		}
		*c = cmd
		return nil
	case "an array":
		var elems []json.RawMessage
		if err := json.Unmarshal(data, &elems); err != nil {
			return fmt.Errorf("invalid command: %w", err)
		}
		if len(elems) == 0 {
			return errors.New("invalid command: empty array; expected at least the program name")
		}
		argv := make([]string, len(elems))
		for i, e := range elems {
			if k := jsonKind(bytes.TrimSpace(e)); k != "a string" {
				return fmt.Errorf("invalid command: element %d: expected a string, got %s", i, k)
			}
			if err := json.Unmarshal(e, &argv[i]); err != nil {
				return fmt.Errorf("invalid command: element %d: %w", i, err)
			}
		}
		if argv[0] == "" {
			return errors.New("invalid command: element 0: empty program name")
		}
		*c = Command{Argv: argv}
		return nil
	default:
		return fmt.Errorf("invalid command: expected a string or an array of strings, got %s", kind)
	}
}

// jsonKind names the JSON type of a trimmed value for error messages.
func jsonKind(data []byte) string {
	if len(data) == 0 {
		return "nothing"
	}
	switch data[0] {
	case '"':
		return "a string"
	case '[':
		return "an array"
	case '{':
		return "an object"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// String renders the command for logs and error messages, quoting the
// arguments that would otherwise be ambiguous.
func (c Command) String() string {
	parts := make([]string, len(c.Argv))
	for i, a := range c.Argv {
		if a == "" || strings.ContainsAny(a, " \t\n\r\v\f\"'`\\") {
			a = strconv.Quote(a)
		}
		parts[i] = a
	}
	return strings.Join(parts, " ")
}

// IsZero reports whether c is the absent command.
func (c Command) IsZero() bool { return len(c.Argv) == 0 }

// Expand executes each argument as a text/template with data, e.g.
// `nginx -t -c {{.Path}}`. Each argument stays exactly one argument after
// expansion: values are never re-split, so data cannot inject extra
// arguments. Missing map keys are errors rather than "<no value>".
func (c Command) Expand(data any) (Command, error) {
	out := Command{Argv: make([]string, len(c.Argv))}
	for i, arg := range c.Argv {
		if !strings.Contains(arg, "{{") {
			out.Argv[i] = arg
			continue
		}
		t, err := template.New("arg").Option("missingkey=error").Parse(arg)
		if err != nil {
			return Command{}, fmt.Errorf("expand %s: argument %d %q: %w", c, i, arg, err)
		}
		var b strings.Builder
		if err := t.Execute(&b, data); err != nil {
			return Command{}, fmt.Errorf("expand %s: argument %d %q: %w", c, i, arg, err)
		}
		out.Argv[i] = b.String()
	}
	if len(out.Argv) > 0 && out.Argv[0] == "" {
		return Command{}, fmt.Errorf("expand %s: program name expanded to an empty string", c)
	}
	return out, nil
}
