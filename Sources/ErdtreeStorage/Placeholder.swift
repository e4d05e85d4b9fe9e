enum ErdtreeStoragePlaceholder {}
