from qbhook.catalog.identity import content_id, file_identity, tree_id

A = file_identity(10, b"\x01" * 32)
B = file_identity(20, b"\x02" * 32)


def test_content_id_ignores_layout_and_order():
    assert content_id([A, B]) == content_id([B, A])
    assert tree_id([("x/a", A), ("x/b", B)]) != tree_id([("y/a", A), ("y/b", B)])
    assert content_id([A, B]) != content_id([A, A, B])  # a multiset, not a set
    assert content_id([A]) != content_id([file_identity(11, A[1])])


def test_tree_id_order_independent_and_bytes_names():
    assert tree_id([("a", A), ("b", B)]) == tree_id([("b", B), ("a", A)])
    assert tree_id([(b"\xff", A)]) == tree_id([("\udcff", A)])
