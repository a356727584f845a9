import VZCore
