package embed

import (
	"testing"

	"github.com/8thdegree/meridian/deploy/local/testenv"
)

// The budget's tests use the real Redis that testenv starts.
func TestMain(m *testing.M) { testenv.Main(m) }
