// Package mask hides secret values in streams of output. The worker masks
// a run's output events with it and the boss masks what it records and
// publishes, so a secret a command prints never leaves as itself, not even
// when it arrives split across chunks.
//
// Every byte that belongs to an occurrence of any secret is hidden. Occurrences
// that overlap (of one secret, or of two secrets sharing bytes) are one masked
// stretch, shown as a single Replacement; stretches that merely touch are
// shown one Replacement each. A Stream gives exactly what Mask gives for the
// whole text, however the text is cut into chunks (see the fuzz test).
package mask

import (
	"bytes"
	"unicode/utf8"
)

// Replacement is what a secret's value becomes.
const Replacement = "***"

// maxHeld bounds what a stream holds back while a masked stretch keeps
// growing through overlapping occurrences (a secret "aa" in a flood of "a"s):
// past it the stretch is released as masked, and what follows starts anew.
const maxHeld = 1 << 20

// Masker knows the secret values; it is safe for concurrent use, and each
// of its Streams is used by one goroutine at a time.
type Masker struct {
	secrets [][]byte
}

// New returns a Masker for secrets; empty values are ignored, since an
// empty value occurs everywhere and hides nothing.
func New(secrets [][]byte) *Masker {
	m := &Masker{}
	for _, s := range secrets {
		if len(s) > 0 {
			m.secrets = append(m.secrets, bytes.Clone(s))
		}
	}
	return m
}

// Empty says there is nothing to mask: text passes through unchanged.
func (m *Masker) Empty() bool { return m == nil || len(m.secrets) == 0 }

// Mask returns text with every secret masked, the whole text at once.
func (m *Masker) Mask(text []byte) []byte {
	if m.Empty() {
		return text
	}
	return m.replace(nil, text, m.stretches(text), len(text))
}

// MaskString is Mask for a string.
func (m *Masker) MaskString(text string) string {
	if m.Empty() {
		return text
	}
	return string(m.Mask([]byte(text)))
}

// Stream masks one stream of output (one task's stdout, say) chunk by chunk.
func (m *Masker) Stream() *Stream { return &Stream{m: m} }

// Stream masks one stream of output. Write gives what can be shown now;
// Flush, at the stream's end, gives the rest.
type Stream struct {
	m    *Masker
	held []byte // the end of the text so far, not yet released
}

// Write adds a chunk and returns the text that can be released now, secrets
// masked. It holds back the longest end of the text that may still become
// (part of) a secret, and never cuts a UTF-8 character in two. The returned
// slice is only valid until the next call.
func (s *Stream) Write(p []byte) []byte {
	if s.m.Empty() {
		return p
	}
	buf := append(s.held, p...)
	st := s.m.stretches(buf)
	open := len(buf) - s.m.openPrefix(buf) // where a secret not yet complete may start
	cut := open
	for {
		moved := cut
		// A stretch running over the cut may still grow with what comes next.
		for _, r := range st {
			if r[0] < cut && cut < r[1] {
				cut = r[0]
			}
		}
		// Never release half a character: its end may come with the next chunk.
		if c := IncompleteTail(buf[:cut]); c < cut && !insideStretch(st, c, cut) {
			cut = c
		}
		if cut == moved {
			break
		}
	}
	if len(buf)-cut > maxHeld {
		cut = open // give up holding a growing stretch: release it masked so far
	}
	out := s.m.replace(nil, buf[:cut], st, cut)
	s.held = append(s.held[:0:0], buf[cut:]...)
	return out
}

// Flush releases what the stream holds, masked: call it when the stream ends.
func (s *Stream) Flush() []byte {
	if s.m.Empty() || len(s.held) == 0 {
		return nil
	}
	buf := s.held
	s.held = nil
	return s.m.Mask(buf)
}

// stretches returns the masked stretches of text, [start, end) each, sorted
// and disjoint: occurrences of secrets that share bytes are merged.
func (m *Masker) stretches(text []byte) [][2]int {
	var occ [][2]int
	for _, s := range m.secrets {
		for from := 0; ; {
			i := bytes.Index(text[from:], s)
			if i < 0 {
				break
			}
			occ = append(occ, [2]int{from + i, from + i + len(s)})
			from += i + 1
		}
	}
	if len(occ) == 0 {
		return nil
	}
	sortStretches(occ)
	merged := occ[:1]
	for _, o := range occ[1:] {
		last := &merged[len(merged)-1]
		if o[0] < last[1] { // shares bytes
			last[1] = max(last[1], o[1])
		} else {
			merged = append(merged, o)
		}
	}
	return merged
}

func sortStretches(occ [][2]int) {
	// insertion sort: few occurrences per chunk, and no allocation
	for i := 1; i < len(occ); i++ {
		for j := i; j > 0 && occ[j][0] < occ[j-1][0]; j-- {
			occ[j], occ[j-1] = occ[j-1], occ[j]
		}
	}
}

// replace appends text[:end] to dst with the stretches masked; a stretch
// running over end is masked up to end.
func (m *Masker) replace(dst, text []byte, st [][2]int, end int) []byte {
	at := 0
	for _, r := range st {
		if r[0] >= end {
			break
		}
		dst = append(dst, text[at:r[0]]...)
		dst = append(dst, Replacement...)
		at = min(r[1], end)
	}
	return append(dst, text[at:end]...)
}

// openPrefix returns the length of the longest end of text that is a proper
// prefix of some secret: the start of an occurrence that may complete later.
func (m *Masker) openPrefix(text []byte) int {
	longest := 0
	for _, s := range m.secrets {
		from := max(len(text)-len(s)+1, 0)
		for i := from; i < len(text) && len(text)-i > longest; i++ {
			j := bytes.IndexByte(text[i:], s[0])
			if j < 0 {
				break
			}
			i += j
			if len(text)-i > longest && bytes.HasPrefix(s, text[i:]) {
				longest = len(text) - i
				break // the first fit from the left is the longest for this secret
			}
		}
	}
	return longest
}

func insideStretch(st [][2]int, from, to int) bool {
	for _, r := range st {
		if r[0] < to && from < r[1] {
			return true
		}
	}
	return false
}

// IncompleteTail returns where a trailing, not yet complete UTF-8 sequence
// starts in p, or len(p) when p ends on a character boundary.
func IncompleteTail(p []byte) int {
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				return i
			}
			return len(p)
		}
	}
	return len(p)
}
