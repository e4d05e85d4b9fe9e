/// Placeholder until the write-ahead log lands.
enum ErdtreeWALPlaceholder {}
