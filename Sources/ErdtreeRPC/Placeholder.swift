// Placeholder until the RPC layer lands.
enum ErdtreeRPCPlaceholder {}
