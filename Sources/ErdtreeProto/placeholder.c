/* placeholder until generated code lands */
int erdtree_proto_placeholder;
