import Testing

@testable import ErdtreeNode

@Suite struct SlaveIdentityTests {
    @Test func aSlaveIsNamedByItsAddressOrByHostnameWhenItListensEverywhere() {
        let host = "slave7"
        #expect(ServerNode.slaveID(.init(address: "10.0.0.5", port: 8081), hostname: host) == "10.0.0.5:8081")
        #expect(ServerNode.slaveID(.init(address: "0.0.0.0", port: 8081), hostname: host) == "slave7:8081")
        #expect(ServerNode.slaveID(.init(address: "::", port: 8082), hostname: host) == "slave7:8082")
        // No hostname to be had: the address, as before.
        #expect(ServerNode.slaveID(.init(address: "0.0.0.0", port: 8081), hostname: "") == "0.0.0.0:8081")
        #expect(!ServerNode.currentHostname().isEmpty)
    }
}
