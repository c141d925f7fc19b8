package mask

import (
	"bytes"
	"testing"
	"unicode/utf8"
)

// naive masks the whole text at once by marking every byte of every
// occurrence: the meaning that Mask and Stream must have.
func naive(secrets [][]byte, text []byte) []byte {
	hidden := make([]bool, len(text))
	for _, s := range secrets {
		if len(s) == 0 {
			continue
		}
		for i := 0; i+len(s) <= len(text); i++ {
			if bytes.Equal(text[i:i+len(s)], s) {
				for j := i; j < i+len(s); j++ {
					hidden[j] = true
				}
			}
		}
	}
	var out []byte
	for i := 0; i < len(text); i++ {
		if !hidden[i] {
			out = append(out, text[i])
			continue
		}
		// occurrences that share bytes are one stretch; touching ones are not
		end := i
		for end < len(text) && hidden[end] && !startsTouching(secrets, text, i, end) {
			end++
		}
		out = append(out, Replacement...)
		i = end - 1
	}
	return out
}

// startsTouching says whether a new stretch begins at end: the occurrences
// covering [start, end) all end at end, and one starts there.
func startsTouching(secrets [][]byte, text []byte, start, end int) bool {
	if end == start {
		return false
	}
	for _, s := range secrets {
		for i := max(start-len(s)+1, 0); i < end; i++ {
			if len(s) > 0 && i+len(s) <= len(text) && i+len(s) > end && bytes.Equal(text[i:i+len(s)], s) {
				return false // an occurrence runs over end
			}
		}
	}
	return true
}

func streamed(m *Masker, chunks [][]byte) []byte {
	s := m.Stream()
	var out []byte
	for _, c := range chunks {
		got := s.Write(c)
		if !utf8.Valid(got) && utf8.Valid(bytes.Join(chunks, nil)) && !containsSecretBytes(m) {
			panic("released half a character")
		}
		out = append(out, got...)
	}
	return append(out, s.Flush()...)
}

func containsSecretBytes(m *Masker) bool {
	for _, s := range m.secrets {
		if !utf8.Valid(s) {
			return true
		}
	}
	return false
}

func TestMask(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secrets []string
		text    string
		want    string
	}{
		{"whole", []string{"hunter2"}, "pw=hunter2\n", "pw=***\n"},
		{"twice", []string{"hunter2"}, "hunter2 hunter2", "*** ***"},
		{"touching", []string{"ab"}, "abab", "******"},
		{"overlapping, one secret", []string{"aa"}, "aaa b", "*** b"},
		{"overlapping secrets", []string{"abc", "bcd"}, "xabcdx", "x***x"},
		{"one inside another", []string{"secret", "cre"}, "a secret, cre", "a ***, ***"},
		{"no secret", []string{"zzz"}, "plain", "plain"},
		{"empty secret ignored", []string{""}, "plain", "plain"},
		{"utf-8", []string{"pässwörd"}, "ä pässwörd ö", "ä *** ö"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var secrets [][]byte
			for _, s := range tc.secrets {
				secrets = append(secrets, []byte(s))
			}
			m := New(secrets)
			if got := m.MaskString(tc.text); got != tc.want {
				t.Errorf("Mask(%q) = %q, want %q", tc.text, got, tc.want)
			}
			if got := string(naive(secrets, []byte(tc.text))); got != tc.want {
				t.Errorf("naive(%q) = %q, want %q", tc.text, got, tc.want)
			}
			// every way of cutting the text in two, and byte by byte
			for i := 0; i <= len(tc.text); i++ {
				if got := string(streamed(m, [][]byte{[]byte(tc.text[:i]), []byte(tc.text[i:])})); got != tc.want {
					t.Errorf("cut at %d: %q, want %q", i, got, tc.want)
				}
			}
			var bytewise [][]byte
			for i := range len(tc.text) {
				bytewise = append(bytewise, []byte{tc.text[i]})
			}
			if got := string(streamed(m, bytewise)); got != tc.want {
				t.Errorf("byte by byte: %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStreamHoldsOnlyAnOpenPrefix(t *testing.T) {
	s := New([][]byte{[]byte("hunter2")}).Stream()
	if got := string(s.Write([]byte("log: hun"))); got != "log: " {
		t.Fatalf("first write released %q, want %q", got, "log: ")
	}
	if got := string(s.Write([]byte("ter2 done\n"))); got != "*** done\n" {
		t.Fatalf("second write released %q, want %q", got, "*** done\n")
	}
	if got := string(s.Write([]byte("hunt"))); got != "" {
		t.Fatalf("third write released %q, want nothing", got)
	}
	if got := string(s.Flush()); got != "hunt" {
		t.Fatalf("flush released %q, want %q", got, "hunt")
	}
}

func TestStreamNeverSplitsACharacter(t *testing.T) {
	s := New([][]byte{[]byte("zz")}).Stream()
	ae := []byte("ä")
	if got := string(s.Write(append([]byte("x"), ae[0]))); got != "x" {
		t.Fatalf("released %q, want %q", got, "x")
	}
	if got := string(s.Write(ae[1:])); got != "ä" {
		t.Fatalf("released %q, want %q", got, "ä")
	}
}

func TestEmptyMaskerPassesThrough(t *testing.T) {
	m := New(nil)
	s := m.Stream()
	if got := string(s.Write([]byte("anything"))); got != "anything" {
		t.Fatalf("got %q", got)
	}
	if got := s.Flush(); got != nil {
		t.Fatalf("flush got %q", got)
	}
}

func FuzzStream(f *testing.F) {
	f.Add([]byte("hunter2"), []byte("ab"), []byte("pw=hunter2 abab hunt"), uint8(3), uint8(7))
	f.Add([]byte("aa"), []byte("aba"), []byte("aaaababa"), uint8(1), uint8(2))
	f.Add([]byte("pässwörd"), []byte("ö"), []byte("ä pässwörd ö"), uint8(4), uint8(5))
	f.Fuzz(func(t *testing.T, s1, s2, text []byte, cut1, cut2 uint8) {
		if len(s1) > 32 || len(s2) > 32 || len(text) > 512 {
			return
		}
		secrets := [][]byte{s1, s2}
		want := naive(secrets, text)
		m := New(secrets)
		if got := m.Mask(text); !bytes.Equal(got, want) {
			t.Fatalf("Mask(%q) = %q, naive %q", text, got, want)
		}
		a, b := min(int(cut1), len(text)), min(int(cut2), len(text))
		a, b = min(a, b), max(a, b)
		if got := streamed(m, [][]byte{text[:a], text[a:b], text[b:]}); !bytes.Equal(got, want) {
			t.Fatalf("streamed %q cut at %d, %d = %q, naive %q", text, a, b, got, want)
		}
	})
}

func TestIncompleteTail(t *testing.T) {
	for in, want := range map[string]int{
		"":                 0,
		"abc":              3,
		"a\xc3":            1, // first byte of é
		"a\xc3\xa9":        3, // whole é
		"\xe2\x82":         0, // two of the three bytes of €
		"\xf0\x9f\x98":     0, // three of the four bytes of 😀
		"\xf0\x9f\x98\x80": 4,
		"a\xa9":            2, // a stray continuation byte is not held back
		"a\xff":            2, // nor is an invalid byte
	} {
		if got := IncompleteTail([]byte(in)); got != want {
			t.Errorf("IncompleteTail(%q) = %d, want %d", in, got, want)
		}
	}
}
