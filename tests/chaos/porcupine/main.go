// porcupine-check: checks histories with Porcupine (github.com/anishathalye/porcupine), the
// reference linearizability checker, to cross-check tests/chaos/lincheck.py. By hand only:
// tests/chaos/crosscheck.py writes the histories and runs this; CI uses lincheck.py alone.
//
// Input (stdin): JSON {"histories": [{"name", "model": "kv"|"etcd"|"append", "ops": [{"call",
// "ret", "noret", "f", "a", "b", "out", "flag", "unknown"}]}]}; "noret": the op never returned
// (it may take effect any time after its call, or never); "unknown": its output is unknown. Output: one line per
// history, "name<TAB>Ok|Illegal|Unknown<TAB>seconds".
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/anishathalye/porcupine"
)

type op struct {
	Call    int64   `json:"call"`
	Ret     int64   `json:"ret"`
	NoRet   bool    `json:"noret"`
	F       string  `json:"f"`
	A       *string `json:"a"` // put/write/append value, cas old
	B       *string `json:"b"` // cas new
	Out     *string `json:"out"`
	Flag    bool    `json:"flag"` // del: existed; cas: matched
	Unknown bool    `json:"unknown"`
}

type history struct {
	Name  string `json:"name"`
	Model string `json:"model"`
	Ops   []op   `json:"ops"`
}

// States are strings; the absent key / nil register is a value no client writes.
const absent = "\x00absent"

func val(p *string) string {
	if p == nil {
		return absent
	}
	return *p
}

func step(model string) func(state, input, output interface{}) (bool, interface{}) {
	return func(state, input, output interface{}) (bool, interface{}) {
		st := state.(string)
		o := input.(op)
		switch o.F {
		case "get", "read":
			return o.Unknown || val(o.Out) == st, st
		case "put", "write":
			return true, val(o.A)
		case "append":
			return true, st + val(o.A)
		case "del":
			return o.Unknown || o.Flag == (st != absent), absent
		case "cas":
			matched := st == val(o.A)
			next := st
			if matched {
				next = val(o.B)
			}
			return o.Unknown || o.Flag == matched, next
		}
		panic("unknown op " + o.F)
	}
}

func main() {
	timeout := 60 * time.Second
	if len(os.Args) > 1 {
		d, err := time.ParseDuration(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "usage: porcupine-check [timeout, e.g. 60s] < histories.json")
			os.Exit(2)
		}
		timeout = d
	}
	var in struct {
		Histories []history `json:"histories"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "porcupine-check:", err)
		os.Exit(2)
	}
	for _, h := range in.Histories {
		init := ""
		if h.Model != "append" {
			init = absent
		}
		model := porcupine.Model{
			Init: func() interface{} { return init },
			Step: step(h.Model),
		}
		ops := make([]porcupine.Operation, 0, len(h.Ops))
		for i, o := range h.Ops {
			ret := o.Ret
			if o.NoRet {
				ret = math.MaxInt64
			}
			ops = append(ops, porcupine.Operation{ClientId: i, Input: o, Call: o.Call, Output: nil,
				Return: ret})
		}
		t := time.Now()
		res := porcupine.CheckOperationsTimeout(model, ops, timeout)
		fmt.Printf("%s\t%s\t%.3f\n", h.Name, res, time.Since(t).Seconds())
	}
}
