print("raftkube")
