"""Lightning callbacks of lstmlab: TensorBoard figures and the like."""
