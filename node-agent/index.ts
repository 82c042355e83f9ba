/**
 * node-agent/: the kubelet of troupe (issue 3). Nothing is exported yet.
 */
export {};
