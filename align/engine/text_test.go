package engine

import "testing"

func TestWholeCharacters(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"鬼滅", "鬼滅"},
		{"鬼\xe6\xbb", "鬼"},               // 滅 cut after two of its three bytes
		{"a\xe6", "a"},                   // after its first byte
		{"🙂\xf0\x9f\x91", "🙂"},           // a four-byte emoji cut after three
		{"👨\u200d", "👨\u200d"},           // a joiner is a whole character
		{"a\x80", "a\x80"},               // a stray continuation byte is not a cut character
		{"\xe6\xbb\xe6\xbb", "\xe6\xbb"}, // only the end is trimmed
	} {
		if got := WholeCharacters(c.in); got != c.want {
			t.Errorf("WholeCharacters(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
