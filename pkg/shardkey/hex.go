package shardkey

const hexDigits = "0123456789abcdef"

// unhex returns the value of one hex digit, either case. The caller checks ok;
// it is written without a table so that it needs no package-level state.
func unhex(c byte) (v byte, ok bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// parseHexUint64 decodes exactly len(s) hex digits (at most 16) into a number.
// Unlike strconv.ParseUint it accepts no sign, prefix or underscore.
func parseHexUint64(s string) (uint64, bool) {
	if len(s) == 0 || len(s) > 16 {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		d, ok := unhex(s[i])
		if !ok {
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}
