/// What decides a node's role when no operator does: one implementation per coordinator
/// (etcd here; a Kubernetes Lease or Consul could sit beside it).
protocol Coordinator: Sendable {
    /// Starts deciding; the node serves already.
    func start()
    /// Stops deciding and gives up what it holds (the leader key, the membership), best effort.
    func stop() async
}
