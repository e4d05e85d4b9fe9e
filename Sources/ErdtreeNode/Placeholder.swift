enum ErdtreeNodePlaceholder {}
