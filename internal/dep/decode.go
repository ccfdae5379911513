package dep

import (
	"bytes"
	"errors"
	"hash/maphash"
)

// Decoder decodes the successive answers of one query, doing work in
// proportion to what changed: for kinds whose answer is a JSON array of
// independent elements (service instances, keys, nodes) it splits the
// answer into elements and decodes only those whose bytes it has not seen
// in the previous answer, reusing the values of the others. The values are
// equal to Decode's (tested on randomised answers); unchanged elements are
// the same pointers as before, which also makes comparing two answers cheap.
//
// It keeps, per element of the last answer, a 128-bit hash of its bytes and
// its value: no copy of the answer. Not safe for concurrent use: one per
// watch loop.
type Decoder struct {
	q     Query
	spec  *kindSpec
	s1    maphash.Seed
	s2    maphash.Seed
	cache map[elemKey]any
	spare map[elemKey]any // the map before cache, cleared and refilled next time
	elems []any           // scratch, reused between answers

	// Reused and Decoded count the elements of the last answer taken from
	// the previous one and decoded afresh (both 0 after a whole decode).
	Reused, Decoded int
}

type elemKey struct {
	h1, h2 uint64
	n      int
}

// NewDecoder returns a Decoder for q's answers.
func NewDecoder(q Query) *Decoder {
	return &Decoder{q: q, spec: q.Kind.spec(), s1: maphash.MakeSeed(), s2: maphash.MakeSeed()}
}

// Decode converts one answer (nil: nothing there) to q's value. The body is
// not retained.
func (d *Decoder) Decode(body []byte) (any, error) {
	d.Reused, d.Decoded = 0, 0
	if d.spec == nil || d.spec.element == nil || body == nil {
		d.cache, d.spare = nil, nil
		return Decode(d.q, body)
	}
	next := d.spare
	if next == nil {
		next = make(map[elemKey]any, len(d.cache))
	}
	clear(next)
	elems := d.elems[:0]
	err := splitArray(body, func(raw []byte) error {
		k := elemKey{maphash.Bytes(d.s1, raw), maphash.Bytes(d.s2, raw), len(raw)}
		v, ok := next[k]
		if !ok {
			if v, ok = d.cache[k]; ok {
				d.Reused++
			} else {
				var err error
				if v, err = d.spec.element(d.q, raw); err != nil {
					return err
				}
				d.Decoded++
			}
			next[k] = v
		} else {
			d.Reused++
		}
		elems = append(elems, v)
		return nil
	})
	if err != nil {
		// Not a well-formed array: the whole decode gives the same error
		// (or value) as the non-incremental path would.
		clear(next)
		d.cache, d.spare, d.Reused, d.Decoded = nil, next, 0, 0
		return Decode(d.q, body)
	}
	v := d.spec.assemble(d.q, elems)
	clear(elems) // drop references held by the scratch slice
	d.elems, d.cache, d.spare = elems[:0], next, d.cache
	if d.spare != nil {
		clear(d.spare) // drop the old answer's values now, not at the next call
	}
	return v, nil
}

var errSyntax = errors.New("not a JSON array")

// splitArray calls fn with the bytes of each element of the JSON array in
// body, in order. It checks the array's structure (brackets, commas,
// strings) but not the elements' contents, which fn decodes; it fails on
// anything that is not exactly one array, so that its successes are a
// subset of encoding/json's.
func splitArray(body []byte, fn func(raw []byte) error) error {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '[' {
		return errSyntax
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == ']' {
		if skipSpace(body, i+1) != len(body) {
			return errSyntax
		}
		return nil
	}
	for {
		end, err := valueEnd(body, i)
		if err != nil {
			return err
		}
		if err := fn(body[i:end]); err != nil {
			return err
		}
		i = skipSpace(body, end)
		if i >= len(body) {
			return errSyntax
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case ']':
			if skipSpace(body, i+1) != len(body) {
				return errSyntax
			}
			return nil
		default:
			return errSyntax
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the index just past the JSON value starting at b[i]:
// an object or array to its matching bracket (skipping strings), a string
// to its closing quote, a literal or number to the next delimiter.
func valueEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch c := b[i]; c {
			case '"':
				end, err := stringEnd(b, i)
				if err != nil {
					return 0, err
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, errSyntax
	case ',', ']', '}', ':':
		return 0, errSyntax
	default:
		start := i
		for i < len(b) {
			switch b[i] {
			case ',', ']', '}', ' ', '\n', '\t', '\r', '"', '{', '[', ':':
				if i == start {
					return 0, errSyntax
				}
				return i, nil
			}
			i++
		}
		return i, nil
	}
}

// stringEnd returns the index just past the string starting at b[i] == '"'.
// It jumps from quote to quote with bytes.IndexByte (most of an answer's
// bytes are inside strings) and skips a quote preceded by an odd number of
// backslashes.
func stringEnd(b []byte, i int) (int, error) {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return 0, errSyntax
		}
		q := i + j
		n := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, nil
		}
		i = q + 1
	}
}
