package main

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// kvInput is an operation a client asked raftkv for.
type kvInput struct {
	Op    string // "get", "put" or "delete"
	Key   string
	Value string // for put
}

// kvOutput is what the operation returned. A write whose outcome the
// client could not learn (a timeout, a connection dropped after sending, a
// 503 with Raftkv-Outcome: unknown, a proxy's 502) is unknown: it may or
// may not have taken effect.
type kvOutput struct {
	Value   string
	Found   bool
	Unknown bool
}

// kvState is one key's value in the model; the history is checked key by
// key.
type kvState struct {
	Value   string
	Present bool
}

// kvModel is the sequential specification of one raftkv key: a get returns
// the last value put, or nothing after a delete.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := make(map[string][]porcupine.Operation)
		var keys []string
		for _, op := range history {
			key := op.Input.(kvInput).Key
			if _, ok := byKey[key]; !ok {
				keys = append(keys, key)
			}
			byKey[key] = append(byKey[key], op)
		}
		partitions := make([][]porcupine.Operation, 0, len(keys))
		for _, key := range keys {
			partitions = append(partitions, byKey[key])
		}
		return partitions
	},
	Init: func() any { return kvState{} },
	Step: func(state, input, output any) (bool, any) {
		current, in, out := state.(kvState), input.(kvInput), output.(kvOutput)
		switch in.Op {
		case "get":
			return out.Found == current.Present && out.Value == current.Value, current
		case "put":
			return true, kvState{Value: in.Value, Present: true}
		default:
			return true, kvState{}
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		switch {
		case in.Op == "get" && out.Found:
			return fmt.Sprintf("get(%s) → %q", in.Key, out.Value)
		case in.Op == "get":
			return fmt.Sprintf("get(%s) → not found", in.Key)
		case out.Unknown:
			return fmt.Sprintf("%s(%s, %q) → unknown", in.Op, in.Key, in.Value)
		default:
			return fmt.Sprintf("%s(%s, %q) → ok", in.Op, in.Key, in.Value)
		}
	},
	DescribeState: func(state any) string {
		if s := state.(kvState); s.Present {
			return fmt.Sprintf("%q", s.Value)
		}
		return "absent"
	},
}
