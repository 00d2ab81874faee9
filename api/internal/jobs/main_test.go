package jobs

import (
	"testing"

	"github.com/8thdegree/meridian/deploy/local/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
