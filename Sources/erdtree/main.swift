print("erdtree")
