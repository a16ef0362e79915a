// Package envbool parses the boolean values people write in environment
// variables: the pipeline's settings use it, and a test holds any boolean
// setting the sidecar adds to it, so both accept the same spellings.
package envbool

import (
	"fmt"
	"strings"
)

// Accepted is what Parse accepts, as error messages and docs say it.
const Accepted = "true or false (also 1/0, yes/no, on/off, t/f; any case)"

var values = map[string]bool{
	"true": true, "1": true, "yes": true, "on": true,
	"false": false, "0": false, "no": false, "off": false,
	"t": true, "f": false, // strconv.ParseBool's, which the pipeline accepted before
}

// Parse reads v, ignoring case and surrounding spaces.
func Parse(v string) (bool, error) {
	b, ok := values[strings.ToLower(strings.TrimSpace(v))]
	if !ok {
		return false, fmt.Errorf("%q is not a boolean; accepted: %s", v, Accepted)
	}
	return b, nil
}
