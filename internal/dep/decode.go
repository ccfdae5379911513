package dep

import (
	"bytes"
	"errors"
	"hash/maphash"
	"slices"
)

// Decoder decodes the successive answers of one query, doing work in
// proportion to what changed: for kinds whose answer is a JSON array of
// independent elements (service instances, keys, nodes) it splits the
// answer into elements and decodes only those whose bytes it has not seen
// in the previous answer, reusing the values of the others. The values are
// equal to Decode's (tested on randomised answers); unchanged elements are
// the same pointers as before, which also makes comparing two answers cheap.
//
// Consul's answers change little between two blocking queries: one instance
// added, removed or modified among thousands. So the Decoder first finds
// how much of the new answer's start and end the previous one shared, in
// whole 2 KiB chunks: it keeps a hash of each chunk of the last answer,
// counted from its start and from its end (0.8% of its size; a copy of the
// answer, compared byte by byte, was a little faster but added the answer's
// size and the GC's headroom over it to the peak RSS). It reuses the
// elements that lie wholly in that common prefix, and those after an
// element boundary in the common suffix, without splitting or hashing them;
// only the bytes between are split (splitting was most of a decode's cost:
// 600-900 MB/s, 10-20 ms for 10,000 instances; hashing the chunks runs at
// about 5 GB/s). Elements between are looked up by a 128-bit hash of their
// bytes, so a reordered answer still reuses what it can.
//
// Not safe for concurrent use: one per watch loop.
type Decoder struct {
	q     Query
	spec  *kindSpec
	s1    maphash.Seed
	s2    maphash.Seed
	cache map[elemKey]any
	spare map[elemKey]any // the map before cache, cleared and refilled next time

	// The last answer that split cleanly: its length, the hashes of its
	// chunks from its start and from its end, and per element its end
	// offset, key and value. The scratch slices of the answer being decoded
	// swap with them.
	prevLen              int
	head, tail           []chunkKey
	headSpare, tailSpare []chunkKey
	last, scratch        elements

	// Reused and Decoded count the elements of the last answer taken from
	// the previous one and decoded afresh (both 0 after a whole decode).
	Reused, Decoded int
}

// elements are an answer's elements in order.
type elements struct {
	ends []int // end offset (exclusive) of each element in the answer
	keys []elemKey
	vals []any
}

func (e *elements) reset() {
	clear(e.vals) // drop references to old values
	e.ends, e.keys, e.vals = e.ends[:0], e.keys[:0], e.vals[:0]
}

func (e *elements) add(end int, k elemKey, v any) {
	e.ends = append(e.ends, end)
	e.keys = append(e.keys, k)
	e.vals = append(e.vals, v)
}

type elemKey struct {
	h1, h2 uint64
	n      int
}

// chunkSize is the granularity of the common prefix and suffix: smaller
// chunks leave less to split around a change and cost more hashes to keep.
const chunkSize = 2 << 10

// chunkKey is a chunk's 64-bit hash, seeded per Decoder: one hash per chunk
// keeps the keys' cost (two passes over the answer) below the split's. A
// wrong match needs two different chunks at the same place in two
// successive answers to hash alike: 2^-64 per chunk compared.
type chunkKey uint64

// chunks appends to dst the keys of body's whole chunks, counted from its
// start, or from its end (so that an answer that grew or shrank in the
// middle still shares its last chunks with the previous one).
func (d *Decoder) chunks(dst []chunkKey, body []byte, fromEnd bool) []chunkKey {
	for i := range len(body) / chunkSize {
		c := body[i*chunkSize : (i+1)*chunkSize]
		if fromEnd {
			c = body[len(body)-(i+1)*chunkSize : len(body)-i*chunkSize]
		}
		dst = append(dst, chunkKey(maphash.Bytes(d.s1, c)))
	}
	return dst
}

// sameChunks is how many leading keys a and b share.
func sameChunks(a, b []chunkKey) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
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
		d.forget()
		return Decode(d.q, body)
	}
	next := d.spare
	if next == nil {
		next = make(map[elemKey]any, len(d.cache))
	}
	clear(next)
	cur := &d.scratch
	cur.reset()
	last := &d.last

	// How much of the previous answer's start and end this one shares.
	head := d.chunks(d.headSpare[:0], body, false)
	tail := d.chunks(d.tailSpare[:0], body, true)
	// Without a previous answer both lists of chunks are empty: no prefix,
	// no suffix.
	p := sameChunks(d.head, head) * chunkSize
	suffixFrom, delta := len(body)-sameChunks(d.tail, tail)*chunkSize, len(body)-d.prevLen
	// Elements that end, with the byte after them, inside the prefix split
	// the same in both answers.
	k, _ := slices.BinarySearch(last.ends, p)
	for i := range k {
		cur.add(last.ends[i], last.keys[i], last.vals[i])
		next[last.keys[i]] = last.vals[i]
	}
	d.Reused += k
	// Split on from just past the prefix's last element, or the '['.
	first := k == 0
	var from int
	if first {
		from = skipSpace(body, 0) + 1
		if from > len(body) || body[from-1] != '[' {
			return d.whole(body, next)
		}
	} else {
		from = last.ends[k-1]
	}
	err := scanArray(body, from, first, func(a, b int) (bool, error) {
		raw := body[a:b]
		key := elemKey{maphash.Bytes(d.s1, raw), maphash.Bytes(d.s2, raw), len(raw)}
		v, ok := next[key]
		if !ok {
			if v, ok = d.cache[key]; ok {
				d.Reused++
			} else {
				var err error
				if v, err = d.spec.element(d.q, raw); err != nil {
					return false, err
				}
				d.Decoded++
			}
			next[key] = v
		} else {
			d.Reused++
		}
		cur.add(b, key, v)
		if b < suffixFrom {
			return false, nil
		}
		// From b on the answer is the previous one's from b-delta: if an
		// element of it ended there, the rest are its elements.
		j, found := slices.BinarySearch(last.ends, b-delta)
		if !found {
			return false, nil
		}
		for i := j + 1; i < len(last.ends); i++ {
			cur.add(last.ends[i]+delta, last.keys[i], last.vals[i])
			next[last.keys[i]] = last.vals[i]
			d.Reused++
		}
		return true, nil
	})
	if err != nil {
		// Not a well-formed array: the whole decode gives the same error
		// (or value) as the non-incremental path would.
		return d.whole(body, next)
	}
	v := d.spec.assemble(d.q, cur.vals)
	d.prevLen = len(body)
	d.head, d.headSpare = head, d.head
	d.tail, d.tailSpare = tail, d.tail
	d.last, d.scratch = d.scratch, d.last
	d.scratch.reset() // drop the old answer's values now, not at the next call
	d.cache, d.spare = next, d.cache
	if d.spare != nil {
		clear(d.spare)
	}
	return v, nil
}

// whole decodes body without the previous answer and forgets it.
func (d *Decoder) whole(body []byte, next map[elemKey]any) (any, error) {
	clear(next)
	d.forget()
	d.spare = next
	d.Reused, d.Decoded = 0, 0
	return Decode(d.q, body)
}

// forget drops what the Decoder kept of earlier answers.
func (d *Decoder) forget() {
	d.cache, d.spare = nil, nil
	d.head, d.tail = d.head[:0], d.tail[:0]
	d.last.reset()
	d.scratch.reset()
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
	return scanArray(body, i+1, true, func(a, b int) (bool, error) { return false, fn(body[a:b]) })
}

// scanArray goes on splitting the JSON array in body from offset i, just
// past its '[' (first) or just past one of its elements, calling fn with
// each element's start and end offsets until fn stops it (the caller knows
// the rest) or the array ends; then nothing but space may follow.
func scanArray(body []byte, i int, first bool, fn func(start, end int) (stop bool, err error)) error {
	if first {
		i = skipSpace(body, i)
		if i < len(body) && body[i] == ']' {
			if skipSpace(body, i+1) != len(body) {
				return errSyntax
			}
			return nil
		}
	} else if next, done, err := afterElement(body, i); err != nil || done {
		return err
	} else {
		i = next
	}
	for {
		end, err := valueEnd(body, i)
		if err != nil {
			return err
		}
		if stop, err := fn(i, end); err != nil || stop {
			return err
		}
		next, done, err := afterElement(body, end)
		if err != nil || done {
			return err
		}
		i = next
	}
}

// afterElement reads what follows an element that ends at i: a comma, and
// then where the next element starts, or the array's end (done), after
// which only space may follow.
func afterElement(body []byte, i int) (next int, done bool, err error) {
	i = skipSpace(body, i)
	if i >= len(body) {
		return 0, false, errSyntax
	}
	switch body[i] {
	case ',':
		return skipSpace(body, i+1), false, nil
	case ']':
		if skipSpace(body, i+1) != len(body) {
			return 0, false, errSyntax
		}
		return 0, true, nil
	}
	return 0, false, errSyntax
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
