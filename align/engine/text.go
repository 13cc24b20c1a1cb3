package engine

import "unicode/utf8"

// WholeCharacters is s without an incomplete UTF-8 sequence at its end:
// the text of generated tokens cut (at max_tokens, the context or end of
// generation) in the middle of a character that byte-level tokens spell in
// several pieces. Written whole, the partial character would become U+FFFD
// in JSON and on a terminal. Invalid bytes elsewhere are left as they are.
func WholeCharacters(s string) string {
	for back := 1; back <= utf8.UTFMax && back <= len(s); back++ {
		if utf8.RuneStart(s[len(s)-back]) {
			if tail := s[len(s)-back:]; !utf8.FullRuneInString(tail) {
				return s[:len(s)-back]
			}
			return s
		}
	}
	return s
}
