package sentencepiece

// pieceTrie maps piece strings to ids and finds, for a position in a text,
// every piece that starts there.
type pieceTrie struct {
	// edges maps (node, byte) to the child node.
	edges map[uint64]int32
	// ids holds the piece id ending at each node, -1 where none does.
	ids []int32
}

func newPieceTrie() *pieceTrie {
	return &pieceTrie{edges: make(map[uint64]int32), ids: []int32{-1}}
}

func (t *pieceTrie) insert(s string, id int) {
	node := int32(0)
	for i := 0; i < len(s); i++ {
		key := uint64(node)<<8 | uint64(s[i])
		child, ok := t.edges[key]
		if !ok {
			child = int32(len(t.ids))
			t.ids = append(t.ids, -1)
			t.edges[key] = child
		}
		node = child
	}
	t.ids[node] = int32(id)
}

// prefixes calls fn with the id and byte length of every piece that is a
// prefix of s, shortest first.
func (t *pieceTrie) prefixes(s string, fn func(id, length int)) {
	node := int32(0)
	for i := 0; i < len(s); i++ {
		child, ok := t.edges[uint64(node)<<8|uint64(s[i])]
		if !ok {
			return
		}
		node = child
		if id := t.ids[node]; id >= 0 {
			fn(int(id), i+1)
		}
	}
}

// longestPrefix returns the id and length of the longest piece that is a
// prefix of s, length 0 when none is.
func (t *pieceTrie) longestPrefix(s string) (id, length int) {
	t.prefixes(s, func(i, l int) { id, length = i, l })
	return id, length
}
